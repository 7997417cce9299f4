"""Who may change the daemon's state: root and members of the plancton-admin group.

The bus policy already enforces this; the daemon checks again so a permissive or missing policy
file (or a bus without policies) cannot hand control of a host's CPU to any local user.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass, field

from planctond.constants import ADMIN_GROUP


@dataclass(frozen=True)
class Authorizer:
    admin_group: str = ADMIN_GROUP
    allowed_uids: frozenset[int] = field(default_factory=lambda: frozenset({0}))

    def may_control(self, uid: int) -> bool:
        """Looked up on every call, so adding someone to the group takes effect without restart."""
        if uid in self.allowed_uids:
            return True
        try:
            admin_gid = grp.getgrnam(self.admin_group).gr_gid
            user = pwd.getpwuid(uid)
        except KeyError:
            return False
        return admin_gid in os.getgrouplist(user.pw_name, user.pw_gid)

    def describe(self) -> str:
        return f"root or members of group {self.admin_group}"
