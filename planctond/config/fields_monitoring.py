"""Readers of the `monitoring` section's targets: InfluxDB (1.x and 2.x) and Prometheus.

Like `fields.py`, each takes a node and returns a value or raises `Invalid` at the node that is
wrong; the loader records it with file, key and line. These sections are new-schema only (Plancton
had a list of `URL#database` strings), so an unknown key is always an error here.
"""

from __future__ import annotations

import importlib.util

from planctond.config import fields as F
from planctond.config.document import Node
from planctond.config.errors import did_you_mean
from planctond.config.model import InfluxDBTarget, PrometheusListen
from planctond.config.schema import HTTP_URL, INFLUX2_KEYS, INFLUX_KEYS, LISTEN, PROMETHEUS_KEYS


def _only(entries: dict[str, Node], allowed: frozenset[str]) -> None:
    for key, node in entries.items():
        if key not in allowed:
            raise F.Invalid(f"unknown key{did_you_mean(key, allowed)}", node)


def prometheus_listen(node: Node) -> PrometheusListen:
    """`prometheus: {listen: "127.0.0.1:9839"}`; a bare port listens on loopback."""
    what = "a mapping with listen: PORT, HOST:PORT or [IPv6]:PORT"
    if not node.is_map:
        raise F.expected(node, what)
    entries = dict(node.value)
    _only(entries, PROMETHEUS_KEYS)
    if "listen" not in entries:
        raise F.Invalid(f"{what} (missing listen)", node)
    listen = entries["listen"]
    found = LISTEN.fullmatch(listen.text() or "")
    port = int(found["port"]) if found else 0
    if found is None or not 1 <= port <= 65535:
        raise F.expected(listen, "PORT (1..65535), HOST:PORT or [IPv6]:PORT")
    if importlib.util.find_spec("prometheus_client") is None:
        raise F.Invalid(
            "Prometheus needs the Python package prometheus_client: install "
            "python3-prometheus-client (Debian, Ubuntu), python3-prometheus_client (Fedora, "
            "EPEL) or `pip install prometheus-client`",
            node,
        )
    host = (found["host"] or "127.0.0.1").strip("[]")
    return PrometheusListen(port=port, host=host)


def influx_target(node: Node) -> InfluxDBTarget:
    what = (
        "an InfluxDB target: URL#database, a mapping with url and database (1.x API), "
        "or with url, org, bucket and token (2.x API)"
    )
    if node.is_map:
        entries = dict(node.value)
        v2 = "org" in entries or "bucket" in entries
        _only(entries, INFLUX2_KEYS if v2 else INFLUX_KEYS)
        needed = ("url", "org", "bucket") if v2 else ("url", "database")
        for key in needed:
            if key not in entries:
                raise F.Invalid(f"{what} (missing {key})", node)
        url = F.text("an http(s):// URL", HTTP_URL)(entries["url"])
        verify = F.boolean(entries["verify_tls"]) if "verify_tls" in entries else True
        legacy = "plancton_series" in entries and F.boolean(entries["plancton_series"])
        if not v2:
            database = F.text("a database name")(entries["database"])
            return InfluxDBTarget(url, database, verify_tls=verify, plancton_series=legacy)
        token = F.text("an API token")(entries["token"]) if "token" in entries else None
        return InfluxDBTarget(
            url,
            F.text("a bucket name")(entries["bucket"]),
            verify_tls=verify,
            plancton_series=legacy,
            org=F.text("an organization name")(entries["org"]),
            token=token,
        )
    value = node.text()
    if value is None or "#" not in value:
        raise F.expected(node, what)
    url, _, database = value.partition("#")
    verify = True
    if url.startswith("insecure_https:"):
        verify = False
        rest = url.removeprefix("insecure_https:")
        url = f"https:{rest}" if rest.startswith("//") else rest
    if not HTTP_URL.fullmatch(url) or not database or (not verify and not url.startswith("https:")):
        raise F.expected(node, what)
    return InfluxDBTarget(
        url=url.rstrip("/"), database=database, verify_tls=verify, plancton_series=True
    )
