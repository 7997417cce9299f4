"""The pip route: `pip install .` must work on a machine without a C compiler or libsystemd's
headers, so systemd-python (a C extension) is an extra, and planctond runs without it.

Built offline from this checkout's tracked files (no index, no build isolation: setuptools comes
from the environment), in a few seconds.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from planctond import __version__

TOP = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip"]


def run(argv: list[str], cwd: Path, **env: str) -> str:
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env={**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel --no-deps --no-build-isolation --no-index` of the tracked files, as they are
    in the working tree (a clean clone has no egg-info or build/ left over)."""
    if shutil.which("git") is None:
        pytest.skip("needs git to list the tracked files")
    pytest.importorskip("pip")
    src = tmp_path_factory.mktemp("src")
    files = run(["git", "ls-files", "-z"], TOP).split("\0")
    for name in filter(None, files):
        if (TOP / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(TOP / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    run(
        [
            *PIP,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out),
            str(src),
        ],
        src,
    )
    (built,) = out.glob("*.whl")
    return built


def test_wheel_is_pure_python(wheel: Path) -> None:
    assert wheel.name == f"planctond-{__version__}-py3-none-any.whl"


def test_systemd_python_is_only_an_extra(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        meta = email.message_from_bytes(zf.read(f"planctond-{__version__}.dist-info/METADATA"))
    requires = meta.get_all("Requires-Dist") or []
    # Older setuptools write `PyYAML (>=6.0)`, newer `PyYAML>=6.0`; the name is what leads.
    names = {re.split(r"[^A-Za-z0-9._-]", r.strip(), maxsplit=1)[0].lower() for r in requires}
    assert {"docker", "dbus-next", "pyyaml", "psutil", "systemd-python"} <= names, requires
    systemd_python = [r for r in requires if r.lower().startswith("systemd-python")]
    extra = re.compile(r"extra\s*==\s*[\"']systemd[\"']")
    assert systemd_python and all(extra.search(r) for r in systemd_python), requires
    assert "systemd" in (meta.get_all("Provides-Extra") or [])


def test_installed_daemon_runs_without_python3_systemd(wheel: Path, tmp_path: Path) -> None:
    """Installed from the wheel with systemd hidden: the daemon's entry point loads a config and
    its journald and sd_notify parts pick the protocol spoken by planctond itself."""
    target = tmp_path / "site"
    run(
        [*PIP, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        tmp_path,
    )
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["systemd"] = None  # any `import systemd...` raises ImportError
        sys.path.insert(0, {str(target)!r})
        import planctond
        assert planctond.__file__.startswith({str(target)!r}), planctond.__file__
        from planctond.control import journal, notify
        assert notify.default_sender() is notify.send_datagram
        assert isinstance(journal.journal_handler(), journal.JournalSocketHandler)
        from planctond.cli.daemon import main
        sys.exit(main(["--check-config", {str(TOP / "packaging" / "config.yaml")!r}]))
        """
    )
    out = run([sys.executable, "-c", script], tmp_path)
    assert "pools:" in out
