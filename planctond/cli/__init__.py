"""The commands. Runs before any of them imports docker-py:

docker-py 5.0.3 imports `distutils`, and with Debian's python3-setuptools installed its
distutils shim answers that by loading all of setuptools: 12 MiB of the daemon's resident memory
for nothing. The standard library's distutils serves docker-py as well; an admin's own setting of
the variable wins.
"""

import os

os.environ.setdefault("SETUPTOOLS_USE_DISTUTILS", "stdlib")
