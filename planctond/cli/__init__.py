"""The commands. This runs before any of them imports docker-py:

docker-py 5.0.3 imports `distutils`, and with Debian's python3-setuptools installed the shim that
setuptools puts on the import path at interpreter start answers that by loading all of
setuptools: 12 MiB of the daemon's resident memory for nothing. The standard library's distutils
serves docker-py as well, so the shim is taken out of the way, unless the admin asked for it by
setting SETUPTOOLS_USE_DISTUTILS themselves.
"""

import os
import sys

if "SETUPTOOLS_USE_DISTUTILS" not in os.environ and "distutils" not in sys.modules:
    _hack = sys.modules.get("_distutils_hack")
    remove_shim = getattr(_hack, "remove_shim", None)
    if callable(remove_shim):
        remove_shim()
