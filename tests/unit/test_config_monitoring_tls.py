"""`monitoring.elasticsearch` targets and the `ca_file` of every TLS target (InfluxDB 1.x, 2.x,
Elasticsearch): accepted, refused with file, key and line, secrets never shown."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from planctond.config.errors import ConfigError
from planctond.config.loader import config_keys, load_config_text
from planctond.config.model import Config, ElasticsearchTarget, InfluxDBTarget
from planctond.config.render import render_effective


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a test CA)")
    d = tmp_path_factory.mktemp("ca")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"),
            *("ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=test CA"),
            *("-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem")),
        ],
        check=True,
        capture_output=True,
    )
    # A bundle the way distributions write them: comments (in UTF-8) between certificates.
    bundle = d / "bundle.pem"
    bundle.write_text("# Issuer: CN=Főtanúsítvány\n" + (d / "ca.pem").read_text() + "# end\n")
    return bundle


def load(text: str) -> Config:
    return load_config_text(textwrap.dedent(text), "site.yaml")


def refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return caught.value


def test_elasticsearch_targets_with_their_defaults(ca_pem: Path) -> None:
    config = load(
        f"""
        monitoring:
          elasticsearch:
            - url: https://es.example.org:9200/
            - url: https://es2.example.org/proxy/es
              index_prefix: site-a.fleet_1
              username: planctond
              password: "p4ss w:rd"
              ca_file: {ca_pem}
            - {{url: "http://127.0.0.1:9200", api_key: "aWQ6a2V5MTIzNDU2Nzg5MA=="}}
            - {{url: "https://self-signed:9200", verify_tls: false}}
        """
    )
    assert config.monitoring.elasticsearch == (
        ElasticsearchTarget("https://es.example.org:9200"),
        ElasticsearchTarget(
            "https://es2.example.org/proxy/es",
            "site-a.fleet_1",
            username="planctond",
            password="p4ss w:rd",
            ca_file=str(ca_pem),
        ),
        ElasticsearchTarget(
            "http://127.0.0.1:9200",
            api_key="aWQ6a2V5MTIzNDU2Nzg5MA==",
        ),
        ElasticsearchTarget("https://self-signed:9200", verify_tls=False),
    )
    single = load("monitoring: {elasticsearch: {url: 'http://es:9200'}}")
    assert single.monitoring.elasticsearch == (ElasticsearchTarget("http://es:9200"),)
    assert load("monitoring: {elasticsearch: }").monitoring.elasticsearch == ()


def test_secrets_are_hidden_and_the_rest_loads_back(ca_pem: Path) -> None:
    config = load(
        f"""
        monitoring:
          elasticsearch:
            - {{url: "https://es:9200", username: writer, password: s3cr3t-pw, ca_file: {ca_pem}}}
            - {{url: "https://es:9201", api_key: "kid:s3cr3t-key"}}
            - {{url: "https://es:9202", index_prefix: lab, verify_tls: false}}
        """
    )
    shown = render_effective(config) + repr(config)
    assert "s3cr3t" not in shown
    assert shown.count("(hidden)") == 2 and "username: writer" in shown
    # What has no secret loads back as it was; a key shown as "(hidden)" is no key.
    rendered = render_effective(config)
    with pytest.raises(ConfigError, match=r"elasticsearch\[1\]\.api_key"):
        load_config_text(rendered, "again.yaml")
    again = load_config_text(rendered.replace("api_key: (hidden)", "api_key: k"), "again.yaml")
    assert again.monitoring.elasticsearch[2] == config.monitoring.elasticsearch[2]
    assert again.monitoring.elasticsearch[0].ca_file == str(ca_pem)


def test_influxdb_targets_take_a_ca_file(ca_pem: Path) -> None:
    config = load(
        f"""
        monitoring:
          influxdb:
            - {{url: "https://influx:8086", database: fleet, ca_file: {ca_pem}}}
            - {{url: "https://influx2", org: o, bucket: b, token: t, ca_file: {ca_pem}}}
            - https://influx:8086#plancton
        """
    )
    first, second, third = config.monitoring.influxdb
    assert first == InfluxDBTarget("https://influx:8086", "fleet", ca_file=str(ca_pem))
    assert second.v2 and second.ca_file == str(ca_pem)
    assert third.ca_file is None
    again = load_config_text(render_effective(config), "again.yaml")
    assert [t.ca_file for t in again.monitoring.influxdb] == [str(ca_pem), str(ca_pem), None]


def test_config_keys_list_the_new_keys() -> None:
    keys = config_keys()
    assert "elasticsearch" in keys["monitoring"]
    assert keys["monitoring.elasticsearch[]"] == {
        *("url", "index_prefix", "username", "password", "api_key", "verify_tls", "ca_file")
    }
    assert "ca_file" in keys["monitoring.influxdb[] (1.x)"]
    assert "ca_file" in keys["monitoring.influxdb[] (2.x)"]


@pytest.mark.parametrize(
    ("entry", "key", "words"),
    [
        ("{index_prefix: x}", "", "missing url"),
        ("{url: 'http://es:9200', idx_prefix: x}", ".idx_prefix", "did you mean 'index_prefix'"),
        ("{url: 'http://es:9200', index_prefix: Fleet}", ".index_prefix", "lowercase"),
        ("{url: 'http://es:9200', index_prefix: -fleet}", ".index_prefix", "starting with"),
        ("{url: 'http://es:9200', index_prefix: .fleet}", ".index_prefix", "starting with"),
        ("{url: 'http://es:9200', index_prefix: 'a*b'}", ".index_prefix", "index name prefix"),
        ("{url: 'http://es:9200', index_prefix: 'a,b'}", ".index_prefix", "index name prefix"),
        ("{url: 'es.example.org:9200'}", ".url", "http(s)://"),
        ("{url: 'http://es:9200?x=1'}", ".url", "http(s)://"),
        ("{url: 'http://es:99999'}", ".url", "port"),
        ("{url: 'http://es:9200', verify_tls: maybe}", ".verify_tls", "true or false"),
        ("{url: 'http://es:9200', username: u}", "", "go together"),
        ("{url: 'http://es:9200', password: p}", "", "go together"),
        ("{url: 'http://es:9200', username: u, password: p, api_key: k}", "", "not both"),
        ("{url: 'http://es:9200', username: 'a:b', password: p}", ".username", "without ':'"),
        ("'http://es:9200'", "", "a mapping with url"),
    ],
)
def test_bad_elasticsearch_targets_are_refused_with_file_key_and_line(
    entry: str, key: str, words: str
) -> None:
    error = refused(f"monitoring:\n  elasticsearch:\n    - {entry}\n")
    (problem,) = error.problems
    assert (problem.file, problem.path, problem.line) == (
        "site.yaml",
        f"monitoring.elasticsearch[0]{key}",
        3,
    )
    assert words in problem.message, problem.message


def test_a_list_is_expected() -> None:
    (problem,) = refused("monitoring:\n  elasticsearch: 3\n").problems
    assert (problem.path, problem.line) == ("monitoring.elasticsearch", 2)
    assert "list of Elasticsearch targets" in problem.message


@pytest.mark.parametrize(
    "entry",
    [
        "{url: 'https://writer:hunter2@es:9200'}",
        "{url: 'https://es:9200', api_key: 'hunter2 with spaces'}",
        "{url: 'https://es:9200', username: u, password: ''}",
    ],
)
def test_a_refused_secret_is_not_quoted_back(entry: str) -> None:
    error = refused(f"monitoring:\n  elasticsearch:\n    - {entry}\n")
    assert "hunter2" not in str(error)
    assert error.problems[0].line == 3


def _ca_error(tmp_path: Path, ca_file: str, target: str = "elasticsearch") -> str:
    entry = (
        f"{{url: 'https://es:9200', ca_file: '{ca_file}'}}"
        if target == "elasticsearch"
        else f"{{url: 'https://influx:8086', database: d, ca_file: '{ca_file}'}}"
    )
    error = refused(f"monitoring:\n  {target}:\n    - {entry}\n")
    (problem,) = error.problems
    assert (problem.path, problem.line) == (f"monitoring.{target}[0].ca_file", 3), problem
    assert str(problem).startswith("site.yaml:3: ")
    return problem.message


@pytest.mark.parametrize("target", ["elasticsearch", "influxdb"])
def test_a_ca_file_that_is_not_a_usable_ca_is_refused_naming_it(
    tmp_path: Path, target: str
) -> None:
    missing = tmp_path / "missing.pem"
    assert _ca_error(tmp_path, str(missing), target) == f"CA file {missing}: no such file"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    assert "no PEM certificate" in _ca_error(tmp_path, str(garbage), target)
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert "OpenSSL cannot use" in _ca_error(tmp_path, str(broken), target)
    assert "not a regular file" in _ca_error(tmp_path, str(tmp_path), target)
    assert "absolute path" in _ca_error(tmp_path, "ca.pem", target)


def test_a_fifo_as_ca_file_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "ca.fifo"
    os.mkfifo(fifo)
    assert "not a regular file" in _ca_error(tmp_path, str(fifo))


def test_a_ca_file_the_daemon_cannot_read(tmp_path: Path, ca_pem: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    private = tmp_path / "private.pem"
    private.write_bytes(ca_pem.read_bytes())
    private.chmod(0)
    assert "not readable by uid" in _ca_error(tmp_path, str(private))


def test_a_ca_file_needs_https_and_verification(ca_pem: Path) -> None:
    (problem,) = refused(
        f"monitoring: {{elasticsearch: [{{url: 'http://es:9200', ca_file: {ca_pem}}}]}}"
    ).problems
    assert "needs an https:// url" in problem.message
    (problem,) = refused(
        "monitoring: {influxdb: [{url: 'https://i:8086', database: d, verify_tls: false, "
        f"ca_file: {ca_pem}}}]}}"
    ).problems
    assert "unused with verify_tls: false" in problem.message
    assert problem.path == "monitoring.influxdb[0].ca_file"
