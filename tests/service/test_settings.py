"""The service settings' environment round trip: what `serve` writes, the service reads back."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.errors import ConfigurationError
from diagnostics.service.settings import ServiceSettings

TOKEN = "t" * 24


def test_settings_survive_the_environment_round_trip(tmp_path: Path) -> None:
    settings = ServiceSettings(
        port=4000,
        storage=tmp_path,
        allow_ae=("PACS1", "PACS2"),
        results_to=("PACS@127.0.0.1:104", "fhir+https://emr.example.org/fhir"),
        stable_seconds=2.5,
        api_tokens=(TOKEN,),
        insecure_dev=True,
        report_language="uz",
    )
    env = settings.to_env()
    assert env["DIAGNOSTICS_ALLOW_AE"] == "PACS1,PACS2"
    assert env["DIAGNOSTICS_API_TOKEN"] == TOKEN and "DIAGNOSTICS_API_TOKENS" not in env
    assert ServiceSettings.from_env(env) == settings


def test_only_the_given_mapping_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIAGNOSTICS_PORT", "4321")
    assert ServiceSettings().port == 3000  # built directly: the environment plays no part
    assert ServiceSettings.from_env({}).port == 3000
    assert ServiceSettings.from_env().port == 4321
    empty = ServiceSettings.from_env({"DIAGNOSTICS_PORT": "", "DIAGNOSTICS_ALLOW_AE": ""})
    assert empty.port == 3000 and empty.allow_ae == ()


@pytest.mark.parametrize(
    ("text", "on"), [("1", True), ("YES", True), ("true", True), ("0", False), ("off", False)]
)
def test_insecure_dev_reads_as_before(text: str, on: bool) -> None:
    assert ServiceSettings.from_env({"DIAGNOSTICS_INSECURE_DEV": text}).insecure_dev is on


def test_tokens_come_from_the_variable_and_the_file(tmp_path: Path) -> None:
    other = "u" * 20
    (tmp_path / "tokens").write_text(f"{other}\n\n")
    env = {"DIAGNOSTICS_API_TOKEN": TOKEN, "DIAGNOSTICS_API_TOKEN_FILE": str(tmp_path / "tokens")}
    assert ServiceSettings.from_env(env).api_tokens == (TOKEN, other)


def test_a_bad_value_is_named_by_its_variable() -> None:
    with pytest.raises(ConfigurationError, match="DIAGNOSTICS_PORT"):
        ServiceSettings.from_env({"DIAGNOSTICS_PORT": "70000"})
    with pytest.raises(ConfigurationError, match="DIAGNOSTICS_WORKERS"):
        ServiceSettings.from_env({"DIAGNOSTICS_WORKERS": "0"})
    with pytest.raises(ConfigurationError, match="'nowhere' is neither"):
        ServiceSettings.from_env({"DIAGNOSTICS_RESULTS_TO": "PACS@h:1,nowhere"})


@pytest.mark.parametrize(
    ("setting", "inside"),
    [
        ("10.0.0.5/24", "10.0.0.77"),  # host bits set: accepted, so it must be trusted as well
        ("10.0.0.0/8", "10.200.1.1"),
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8::1/64", "2001:db8::abcd"),
        ("2001:DB8::5", "2001:db8::5"),
    ],
)
def test_every_accepted_proxy_is_trusted_by_uvicorns_own_parser(setting: str, inside: str) -> None:
    """What the settings accept, uvicorn's proxy-headers middleware (which reads
    FORWARDED_ALLOW_IPS, as `diagnostics.serving.service` sets it) matches."""
    from uvicorn.middleware.proxy_headers import _TrustedHosts

    from diagnostics.service.settings import forwarded_allow_ips

    settings = ServiceSettings.from_env({"DIAGNOSTICS_TRUSTED_PROXY": f"{setting},127.0.0.1"})
    env = settings.to_env()["DIAGNOSTICS_TRUSTED_PROXY"]
    for allowed in (env, forwarded_allow_ips(setting)):  # via `serve`, and set by hand
        trusted = _TrustedHosts(allowed)
        assert inside in trusted
        assert "198.51.100.1" not in trusted


def test_log_rotation_without_backups_is_refused(tmp_path: Path) -> None:
    """Python's RotatingFileHandler never rolls over with backupCount=0: no silent growth."""
    base = {"DIAGNOSTICS_LOG_FILE": str(tmp_path / "service.log"), "DIAGNOSTICS_LOG_BACKUPS": "0"}
    with pytest.raises(ConfigurationError, match=r"LOG_BACKUPS.*LOG_MAX_BYTES"):
        ServiceSettings.from_env(base)
    assert ServiceSettings.from_env({**base, "DIAGNOSTICS_LOG_MAX_BYTES": "0"}).log_backups == 0
    assert ServiceSettings.from_env({**base, "DIAGNOSTICS_LOG_BACKUPS": "1"}).log_backups == 1


@pytest.mark.parametrize(
    "url",
    [
        "https://pacsuser:s3cret-pw@pacs.example.org/dicomweb",
        "fhir+https://emruser:s3cret-pw@emr.example.org/fhir",
        "http://token-only-s3cret-pw@pacs.example.org/dicomweb",
    ],
)
def test_credentials_in_a_destination_url_are_refused_without_showing_them(url: str) -> None:
    """They would reach exception texts, the outbox's last error and the audit trail."""
    with pytest.raises(ConfigurationError, match="--results-auth-file") as refused:
        ServiceSettings.from_env({"DIAGNOSTICS_RESULTS_TO": url})
    assert "s3cret-pw" not in str(refused.value) and "example.org" in str(refused.value)
    host_only = url.split("//")[0] + "//" + url.split("@")[1]
    assert ServiceSettings.from_env({"DIAGNOSTICS_RESULTS_TO": host_only}).results_to
