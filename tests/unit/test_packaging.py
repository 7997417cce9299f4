"""The shipped systemd, sysusers, packaging and config files agree with the code's names.

A unit that says `BusName=org.plancton` while the daemon owns another name, or a slice Docker is
told to use under another name, fails only on a real host: these checks fail here instead.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from planctond import __version__
from planctond import constants as C
from planctond.cli.daemon import EX_CONFIG
from planctond.config.loader import load_config
from planctond.config.model import Config

TOP = Path(__file__).resolve().parents[2]
SYSTEMD = TOP / "systemd"
DEBIAN = TOP / "packaging" / "deb" / "debian"
SPEC = TOP / "packaging" / "rpm" / "planctond.spec"


def unit_settings(path: Path) -> dict[str, list[str]]:
    """`Section.Key` -> every value given (systemd allows repeated keys)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {raw!r}"
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return unit_settings(SYSTEMD / "planctond.service")


def one(settings: dict[str, list[str]], key: str) -> str:
    values = settings.get(key)
    assert values is not None, f"{key} missing"
    assert len(values) == 1, f"{key} given {len(values)} times: {values}"
    return values[0]


def test_service_is_a_notify_service_with_watchdog_and_reload(
    service: dict[str, list[str]],
) -> None:
    assert one(service, "Service.Type") == "notify"
    assert one(service, "Service.NotifyAccess") == "main"
    assert one(service, "Service.WatchdogSec") == "30s"
    assert one(service, "Service.Restart") == "on-failure"
    assert one(service, "Service.ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(service, "Service.ExecStart") == "/usr/bin/planctond"
    assert one(service, "Install.WantedBy") == "multi-user.target"


def test_a_config_error_is_not_restarted_forever(service: dict[str, list[str]]) -> None:
    """planctond exits 78 on a config it cannot use; restarting would repeat that every RestartSec."""
    assert one(service, "Service.RestartPreventExitStatus") == str(EX_CONFIG)


@pytest.mark.parametrize(
    ("setup_rc", "passes"), [(0, True), (EX_CONFIG, True), (1, False), (2, False)]
)
def test_prestart_lets_only_a_config_error_through(
    service: dict[str, list[str]], tmp_path: Path, setup_rc: int, passes: bool
) -> None:
    """The root prestart reads the same config. Its 78 must not fail the start (systemd restarts
    on a failed ExecStartPre=, RestartPreventExitStatus= only looks at the main process): the
    daemon then says what is wrong and exits 78 itself. Anything else (no idle cgroup) fails."""
    argv = shlex.split(one(service, "Service.ExecStartPre").removeprefix("+"))
    assert argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3, argv
    stub = tmp_path / "planctond"
    stub.write_text(f'#!/bin/sh\n[ "$1" = --setup-cgroup ] || exit 99\nexit {setup_rc}\n')
    stub.chmod(0o755)
    # systemd turns "$$" into "$" before running the command line.
    script = argv[2].replace("$$", "$").replace("/usr/bin/planctond", str(stub))
    assert "/usr/bin/planctond" in argv[2]
    rc = subprocess.run(["/bin/sh", "-c", script], timeout=30).returncode
    assert (rc == 0) is passes, rc


def test_service_names_match_the_code(service: dict[str, list[str]]) -> None:
    assert one(service, "Service.BusName") == C.BUS_NAME
    assert one(service, "Service.User") == C.SERVICE_USER
    assert one(service, "Service.SupplementaryGroups") == "docker"
    assert "/var/lib/" + one(service, "Service.StateDirectory") == C.DEFAULT_STATE_DIR
    config_dir = "/etc/" + one(service, "Service.ConfigurationDirectory")
    assert Path(C.DEFAULT_CONFIG_PATH).parent == Path(config_dir)
    assert (SYSTEMD / C.UNIT_NAME).exists()


def test_only_the_cgroup_setup_runs_as_root(service: dict[str, list[str]]) -> None:
    pre = one(service, "Service.ExecStartPre")
    assert pre.startswith("+/bin/sh -c '/usr/bin/planctond --setup-cgroup ||"), pre
    privileged = [
        v for k, vs in service.items() if k.startswith("Service.Exec") for v in vs if v[:1] in "+!"
    ]
    assert privileged == [pre]
    # The daemon itself stays in system.slice; only its pilots go to the idle slice.
    assert "Service.Slice" not in service


def test_service_is_hardened(service: dict[str, list[str]]) -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
    }
    for key, value in expected.items():
        assert one(service, f"Service.{key}") == value, key
    families = set(one(service, "Service.RestrictAddressFamilies").split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6"}
    filters = service["Service.SystemCallFilter"]
    assert filters[0] == "@system-service"
    assert all(f.startswith("~") for f in filters[1:])


def test_slice_is_the_idle_parent_docker_is_told_to_use() -> None:
    path = SYSTEMD / C.CGROUP_PARENT_SYSTEMD
    settings = unit_settings(path)
    assert one(settings, "Slice.CPUWeight") == "idle"


def test_sysusers_creates_the_service_user_in_the_docker_group() -> None:
    lines = [
        line.split()
        for line in (SYSTEMD / "planctond.sysusers").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0][:2] == ["u", C.SERVICE_USER]
    assert ["g", C.ADMIN_GROUP, "-"] in lines
    assert ["m", C.SERVICE_USER, "docker"] in lines


def test_tmpfiles_state_dir_matches_the_unit() -> None:
    entries = [
        line.split()
        for line in (SYSTEMD / "planctond.tmpfiles").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ["d", C.DEFAULT_STATE_DIR, "0750", C.SERVICE_USER, C.SERVICE_USER, "-"] in entries


def test_shipped_config_loads_and_spells_out_the_defaults() -> None:
    shipped = load_config(str(TOP / "packaging" / "config.yaml"), missing_ok=False)
    defaults = Config()
    assert shipped.warnings == ()
    assert [p.name for p in shipped.pools] == [C.DEFAULT_POOL_NAME]
    pool = shipped.pools[0]
    assert (pool.image, pool.command) == ("busybox:latest", ("sleep", "60"))
    for f in dataclasses.fields(Config):
        if f.name in ("source", "pools"):
            continue
        assert getattr(shipped, f.name) == getattr(defaults, f.name), f.name
    for f in dataclasses.fields(pool):
        if f.name == "memory":
            # The schema's "2G" is binary (Docker's meaning); the built-in default is 2e9 bytes.
            assert pool.memory == 2 * 1024**3
            continue
        assert getattr(pool, f.name) == getattr(defaults.pools[0], f.name), f.name


def test_every_setting_in_the_shipped_config_is_explained() -> None:
    """Each block of settings is preceded by a comment saying what it does."""
    lines = (TOP / "packaging" / "config.yaml").read_text().splitlines()
    previous = ""
    for line in lines:
        stripped = line.strip()
        if re.match(r"^[a-z_]+:", stripped):
            assert (
                previous.startswith("#")
                or previous.endswith(":")
                or re.match(r"^[a-z_]+:", previous)
            ), f"unexplained setting: {line!r}"
        if stripped:
            previous = stripped
    assert sum(1 for line in lines if line.lstrip().startswith("#")) >= 20


def test_debian_package_declares_what_issue_5_asks() -> None:
    control = (DEBIAN / "control").read_text()
    assert "debhelper-compat (= 13)" in control
    assert "pybuild-plugin-pyproject" in control
    assert "dh-python" in control
    depends = re.search(r"^Depends:(.*?)^Description", control, re.S | re.M)
    assert depends is not None
    for package in (
        "python3-docker",
        "python3-dbus-next",
        "python3-systemd",
        "python3-yaml",
        "python3-psutil",
        "docker.io | docker-ce",
    ):
        assert package in depends.group(1), package
    rules = (DEBIAN / "rules").read_text()
    for path in (
        "lib/systemd/system/planctond.service",
        "lib/systemd/system/planctond.slice",
        "usr/lib/sysusers.d/planctond.conf",
        "usr/lib/tmpfiles.d/planctond.conf",
        "usr/lib/systemd/catalog/planctond.catalog",
        "usr/share/dbus-1/system.d/org.plancton.conf",
        "usr/share/dbus-1/interfaces/org.plancton.Manager1.xml",
        "etc/plancton/config.yaml",
        "usr/share/bash-completion/completions/planctonctl",
    ):
        assert f"$(PKG)/{path}" in rules, path
    assert "dh_installsysusers" in rules
    assert not (DEBIAN / "changelog").exists(), "debian/changelog is generated from __version__"


def test_rpm_spec_uses_the_systemd_scriptlets_and_one_version() -> None:
    spec = SPEC.read_text()
    for macro in (
        "%systemd_post planctond.service",
        "%systemd_preun planctond.service",
        "%systemd_postun_with_restart planctond.service",
        "%pyproject_wheel",
        "%pyproject_install",
        "BuildArch:      noarch",
        "%config(noreplace) %{_sysconfdir}/plancton/config.yaml",
    ):
        assert macro in spec, macro
    assert "Version:        %{planctond_version}" in spec
    assert __version__ not in spec.split("%changelog")[0]
