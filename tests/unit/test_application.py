"""The composition root's own decisions (what it builds for which config)."""

from __future__ import annotations

from planctond.cli.application import uses_variable
from planctond.config.loader import load_config_text


def _config(max_pilots: str, run_when: str) -> str:
    return f"""
pools:
  a:
    image: busybox:latest
    max_pilots: "{max_pilots}"
  b:
    image: busybox:latest
    run_when: "{run_when}"
"""


def test_logind_is_asked_only_when_an_expression_reads_owner_idle() -> None:
    never = load_config_text(_config("ncpus - 1", "true"), "t.yaml")
    in_run_when = load_config_text(_config("2", "owner_idle > 600"), "t.yaml")
    in_max = load_config_text(_config("1 if owner_idle > 60 else 0", "true"), "t.yaml")
    assert not uses_variable(never, "owner_idle")
    assert uses_variable(in_run_when, "owner_idle")
    assert uses_variable(in_max, "owner_idle")
