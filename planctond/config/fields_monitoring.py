"""Readers of the `monitoring` section's targets: InfluxDB (1.x and 2.x), Prometheus and
Elasticsearch, and of the CA file a TLS target may trust.

Like `fields.py`, each takes a node and returns a value or raises `Invalid` at the node that is
wrong; the loader records it with file, key and line. These sections are new-schema only (Plancton
had a list of `URL#database` strings), so an unknown key is always an error here.

A `ca_file` is read and parsed at load, as the daemon's user: a CA file the daemon cannot read
(`ProtectHome=`, its mode) or that holds no certificate is refused with the reload, where the admin
is looking, instead of failing every send later. The writers read it again with `read_ca_file`
(`config/tls.py`, shared with the remote config).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from planctond.config import fields as F
from planctond.config.document import Node
from planctond.config.errors import did_you_mean
from planctond.config.model import (
    DEFAULT_INDEX_PREFIX,
    ElasticsearchTarget,
    InfluxDBTarget,
    PrometheusListen,
)
from planctond.config.schema import (
    ELASTICSEARCH_KEYS,
    ES_URL,
    HTTP_URL,
    INDEX_PREFIX,
    INFLUX2_KEYS,
    INFLUX_KEYS,
    LISTEN,
    PROMETHEUS_KEYS,
)
from planctond.config.tls import read_ca_file

_USERNAME: Final = re.compile(r"[^:]+")
_API_KEY: Final = re.compile(r"[A-Za-z0-9_+/=:.-]+", re.ASCII)


def _ca_file(entries: dict[str, Node], url: str, verify: bool) -> str | None:
    node = entries.get("ca_file")
    if node is None or node.is_null:
        return None
    path = F.absolute_path(node)
    try:
        read_ca_file(path)
    except ValueError as exc:
        raise F.Invalid(f"CA file {path}: {exc}", node) from None
    if not url.startswith("https:"):
        raise F.Invalid("ca_file needs an https:// url", node)
    if not verify:
        raise F.Invalid("ca_file is unused with verify_tls: false (remove one of them)", node)
    return path


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
        ca_file = _ca_file(entries, url, verify)
        if not v2:
            database = F.text("a database name")(entries["database"])
            return InfluxDBTarget(
                url, database, verify_tls=verify, plancton_series=legacy, ca_file=ca_file
            )
        token = F.text("an API token")(entries["token"]) if "token" in entries else None
        return InfluxDBTarget(
            url,
            F.text("a bucket name")(entries["bucket"]),
            verify_tls=verify,
            plancton_series=legacy,
            org=F.text("an organization name")(entries["org"]),
            token=token,
            ca_file=ca_file,
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


def _secret(what: str, pattern: re.Pattern[str] | None = None) -> Callable[[Node], str]:
    """Like `F.text`, but a refusal never quotes the value: errors go to the journal."""

    def read(node: Node) -> str:
        value = node.text()
        if not value or (pattern is not None and not pattern.fullmatch(value)):
            raise F.Invalid(f"expected {what} (the value is not shown)", node)
        return value

    return read


def elasticsearch_target(node: Node) -> ElasticsearchTarget:
    """`{url: https://es:9200, index_prefix: planctond, api_key: ...}`. Credentials have keys of
    their own, never the URL's user:password, so no URL ever shown can carry them."""
    what = (
        "an Elasticsearch target: a mapping with url and optionally index_prefix, username and "
        "password or api_key, verify_tls, ca_file"
    )
    if not node.is_map:
        raise F.expected(node, what)
    entries = dict(node.value)
    _only(entries, ELASTICSEARCH_KEYS)
    if "url" not in entries:
        raise F.Invalid(f"{what} (missing url)", node)
    url_node = entries["url"]
    if "@" in (url_node.text() or ""):  # said without the URL: it may hold a password
        raise F.Invalid(
            "credentials in the URL are refused (it is shown in logs): use username and "
            "password, or api_key",
            url_node,
        )
    url_hint = "an http(s)://host[:port][/path] URL (credentials: username/password or api_key)"
    url = F.text(url_hint, ES_URL)(url_node)
    try:
        urlsplit(url).port  # noqa: B018 (it checks the port)
    except ValueError:
        raise F.expected(url_node, "a URL with a port 1..65535") from None
    prefix = DEFAULT_INDEX_PREFIX
    if "index_prefix" in entries:
        prefix = F.text(
            "an index name prefix: lowercase letters, digits, '_', '.', '-', starting with a "
            "letter or digit, at most 200 characters",
            INDEX_PREFIX,
        )(entries["index_prefix"])
    verify = F.boolean(entries["verify_tls"]) if "verify_tls" in entries else True
    readers = {
        "username": F.text("a user name without ':' (HTTP basic auth)", _USERNAME),
        "password": _secret("a password"),
        "api_key": _secret("an API key: id:key, or its base64 form", _API_KEY),
    }
    given = {
        key: reader(entries[key])
        for key, reader in readers.items()
        if key in entries and not entries[key].is_null
    }
    if "api_key" in given and ("username" in given or "password" in given):
        raise F.Invalid("either username and password, or api_key, not both", node)
    if ("username" in given) != ("password" in given):
        raise F.Invalid("username and password go together", node)
    return ElasticsearchTarget(
        url=url.rstrip("/"),
        index_prefix=prefix,
        username=given.get("username"),
        password=given.get("password"),
        api_key=given.get("api_key"),
        verify_tls=verify,
        ca_file=_ca_file(entries, url, verify),
    )
