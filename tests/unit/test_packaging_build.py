"""`make deb` and `make rpm` from this checkout: what lands in dist/, what the packages contain and
what their maintainer scripts do, read back with dpkg, rpm and lintian (Debian's tools).

Slow-ish (the .deb build takes ~30 s): marked slow.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from planctond import __version__

pytestmark = pytest.mark.slow

TOP = Path(__file__).resolve().parents[2]

# What both packages install besides the Python code (the Debian layout; RPM puts units under
# /usr/lib/systemd/system).
COMMON_FILES = (
    "/usr/bin/planctond",
    "/usr/bin/planctonctl",
    "/usr/lib/sysusers.d/planctond.conf",
    "/usr/lib/tmpfiles.d/planctond.conf",
    "/usr/lib/systemd/catalog/planctond.catalog",
    "/usr/share/dbus-1/system.d/org.plancton.conf",
    "/usr/share/dbus-1/interfaces/org.plancton.Manager1.xml",
    "/etc/plancton/config.yaml",
    "/usr/share/bash-completion/completions/planctonctl",
    "/usr/lib/planctond/remove-pilots",
)


def run(argv: list[str], **env: str) -> str:
    proc = subprocess.run(
        argv,
        cwd=TOP,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stderr[-5000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("the build scripts install their build dependencies as root")
    out = tmp_path_factory.mktemp("dist")
    run(["sh", "packaging/build-deb.sh"], DIST_DIR=str(out))
    run(["sh", "packaging/build-rpm.sh"], DIST_DIR=str(out))
    return out


def test_deb_lands_in_dist_with_the_version_from_init(dist: Path) -> None:
    deb = dist / f"planctond_{__version__}_all.deb"
    assert deb.exists(), sorted(p.name for p in dist.iterdir())
    assert run(["dpkg-deb", "-f", str(deb), "Version"]).strip() == __version__
    depends = run(["dpkg-deb", "-f", str(deb), "Depends"])
    for dep in ("python3-docker", "python3-dbus-next", "python3-systemd", "python3-yaml"):
        assert dep in depends
    assert "docker.io | docker-ce" in depends
    assert (dist / f"planctond_{__version__}.dsc").exists()


def test_deb_contents_and_conffile(dist: Path) -> None:
    deb = str(dist / f"planctond_{__version__}_all.deb")
    listing = {line.split()[-1].lstrip(".") for line in run(["dpkg-deb", "-c", deb]).splitlines()}
    for path in (
        *COMMON_FILES,
        "/lib/systemd/system/planctond.service",
        "/lib/systemd/system/planctond.slice",
        "/usr/share/man/man1/planctonctl.1.gz",
        "/usr/share/man/man8/planctond.8.gz",
        "/usr/lib/python3/dist-packages/planctond/cli/daemon.py",
    ):
        assert path in listing, path
    control = dist / "control"
    run(["dpkg-deb", "-e", deb, str(control)])
    assert (control / "conffiles").read_text().split() == ["/etc/plancton/config.yaml"]
    postinst = (control / "postinst").read_text()
    # The user exists and the bus knows it before the unit starts; restart on upgrade.
    assert postinst.index("systemd-sysusers") < postinst.index("ReloadConfig")
    assert postinst.index("ReloadConfig") < postinst.index("deb-systemd-invoke $_dh_action")
    assert "_dh_action=restart" in postinst
    assert "deb-systemd-helper enable 'planctond.service'" in postinst
    prerm = (control / "prerm").read_text()
    assert prerm.index("deb-systemd-invoke stop") < prerm.index("remove-pilots")
    postrm = (control / "postrm").read_text()
    assert "rm -rf /etc/plancton" in postrm and "rm -rf /var/lib/planctond" in postrm


def test_every_lintian_tag_is_explained_in_the_readme(dist: Path) -> None:
    report = (dist / f"lintian-planctond_{__version__}.txt").read_text()
    tags = set(re.findall(r"^[EWIPX]: planctond(?: source)?: ([a-z0-9.+-]+)", report, re.M))
    assert not re.search(r"^E: ", report, re.M), report
    readme = (TOP / "README.md").read_text()
    unexplained = sorted(t for t in tags if f"`{t}`" not in readme)
    assert unexplained == [], f"lintian tags not explained in README.md: {unexplained}\n{report}"


def test_rpm_file_list(dist: Path) -> None:
    rpm = str(dist / f"planctond-{__version__}-1.noarch.rpm")
    files = set(run(["rpm", "-qpl", rpm]).split())
    for path in (
        *COMMON_FILES,
        "/usr/lib/systemd/system/planctond.service",
        "/usr/lib/systemd/system/planctond.slice",
        "/usr/share/man/man1/planctonctl.1",
        "/usr/share/man/man8/planctond.8",
    ):
        assert path in files, path
    assert any(re.search(r"/site-packages/planctond/cli/daemon\.py$", f) for f in files)
    assert run(["rpm", "-qp", "--qf", "%{ARCH} %{VERSION}", rpm]) == f"noarch {__version__}"
    assert run(["rpm", "-qpc", rpm]).split() == ["/etc/plancton/config.yaml"]


def test_rpm_scriptlets(dist: Path) -> None:
    rpm = str(dist / f"planctond-{__version__}-1.noarch.rpm")
    scripts = run(["rpm", "-qp", "--scripts", rpm])
    sections = dict(
        re.findall(
            r"^(\w+) scriptlet \(using /bin/sh\):\n(.*?)(?=^\w+ (?:scriptlet|program)|\Z)",
            scripts,
            re.S | re.M,
        )
    )
    assert {"postinstall", "preuninstall", "postuninstall"} <= set(sections), scripts
    post = sections["postinstall"]
    assert post.index("systemd-sysusers planctond.conf") < post.index("preset planctond.service")
    preun = sections["preuninstall"]
    assert "disable --now planctond.service" in preun
    assert preun.index("disable --now") < preun.index("remove-pilots")
    postun = sections["postuninstall"]
    assert "try-restart planctond.service" in postun
    assert "rm -rf /var/lib/planctond" in postun
    requires = run(["rpm", "-qpR", rpm])
    assert "(moby-engine or docker-ce)" in requires
    assert "python3-dbus-next" in requires
