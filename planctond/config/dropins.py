"""The drop-in directory next to the main config file: `/etc/plancton/config.d/*.yaml`.

Packages and admins each add a piece of config (a site's `remote:` source, a host's lower
`max_pilots`) without editing a file someone else owns, as with systemd's drop-ins. Pieces are
merged in the byte order of their names (`10-site.yaml` under `50-host.yaml`), over the remote
config and under the main file.

Only `*.yaml` files count, and not hidden ones: a package manager's leftovers
(`site.yaml.dpkg-old`, `.site.yaml.swp`) are not config. Like the main file, every piece is read
bounded, and all pieces together may hold no more than one config file
(`constants.MAX_CONFIG_SIZE`): parsing them must stay as cheap as parsing one file.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from planctond import constants as C
from planctond.config.errors import ConfigError, Problem
from planctond.config.files import read_config_text, read_limited

# Far beyond any config; only there to notice a change of what cannot be read (see below).
DIGEST_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True)
class Piece:
    path: str
    text: str


def dropin_dir(config_path: str) -> str:
    return os.path.join(os.path.dirname(config_path) or ".", C.DROPIN_DIR_NAME)


def dropin_paths(config_path: str) -> list[str]:
    """The drop-ins of `config_path`, in merge order; ConfigError when the directory is there
    but cannot be listed (a missing directory is no drop-ins)."""
    directory = dropin_dir(config_path)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(
            [Problem(directory, "", None, f"cannot list the drop-ins: {exc.strerror or exc}")]
        ) from None
    chosen = sorted(
        (n for n in names if n.endswith(C.DROPIN_SUFFIX) and not n.startswith(".")),
        key=os.fsencode,
    )
    if len(chosen) > C.MAX_DROPINS:
        raise ConfigError(
            [Problem(directory, "", None, f"more than {C.MAX_DROPINS} drop-ins: not config")]
        )
    return [os.path.join(directory, name) for name in chosen]


def read_dropins(config_path: str) -> list[Piece]:
    """Every drop-in's text, in merge order; ConfigError for one that cannot be read (a piece
    that vanished since the listing is skipped: it was being removed)."""
    pieces: list[Piece] = []
    total = 0
    for path in dropin_paths(config_path):
        try:
            text = read_config_text(path)
        except FileNotFoundError:
            continue
        total += len(text)
        if total > C.MAX_CONFIG_SIZE:
            raise ConfigError(
                [
                    Problem(
                        path,
                        "",
                        None,
                        f"the drop-ins together hold more than {C.MAX_CONFIG_SIZE} bytes",
                    )
                ]
            )
        pieces.append(Piece(path, text))
    return pieces


def _digest_of(path: str) -> str:
    try:
        return hashlib.sha256(read_limited(path, DIGEST_LIMIT)).hexdigest()
    except FileNotFoundError:
        return "absent"
    except OSError as exc:
        try:
            st = os.stat(path)
        except OSError:
            return f"unreadable: {exc}"
        return f"unreadable: {st.st_mode:o} {st.st_ino} {st.st_size} {st.st_mtime_ns}"


def layers_digest(config_path: str | None) -> str:
    """What the main file and its drop-ins hold, to notice a change: "" without a file, the main
    file's own digest when there are no drop-ins (what `file_digest` always gave). Something
    unreadable is told apart by its metadata, so fixing it is a change too."""
    if not config_path:
        return ""
    main = _digest_of(config_path)
    try:
        paths = dropin_paths(config_path)
    except ConfigError as exc:
        return f"{main} {exc}"
    if not paths:
        return main
    parts = [main, *(f"{os.path.basename(p)}={_digest_of(p)}" for p in paths)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
