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
