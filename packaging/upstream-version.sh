#!/bin/sh
# Print planctond's version, the one place it is kept: __version__ in planctond/__init__.py, as
# committed at HEAD (the packages are built from HEAD), or as on disk outside a git checkout.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    init=$(git show HEAD:planctond/__init__.py)
else
    init=$(cat planctond/__init__.py)
fi
version=$(printf '%s\n' "$init" | sed -n 's/^__version__ = "\(.*\)"$/\1/p')
[ -n "$version" ] || { echo "no __version__ in planctond/__init__.py" >&2; exit 1; }
printf '%s\n' "$version"
