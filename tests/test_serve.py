"""`diagnostics serve` before it starts anything: settings from flags and environment, checks."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from diagnostics.cli import build_parser, main
from diagnostics.errors import ConfigurationError, DiagnosticsError
from diagnostics.serve import (
    config_from_args,
    preflight,
    server_command,
    server_environment,
    usage,
)

TOKEN = "cli-test-token-0123456789"


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_flags_override_the_environment_which_overrides_defaults(tmp_path: Path) -> None:
    env = {
        "DIAGNOSTICS_PORT": "4000",
        "DIAGNOSTICS_ALLOW_AE": "PACS1,PACS2",
        "DIAGNOSTICS_STABLE_SECONDS": "3",
        "DIAGNOSTICS_API_TOKEN": TOKEN,
    }
    args = parse("--port", "4100", "--allow-ae", "MODALITY", "--storage", str(tmp_path / "s"))
    config = config_from_args(args, env)
    assert config.port == 4100
    assert config.allow_ae == ("MODALITY",)
    assert config.stable_seconds == 3.0
    assert config.storage == (tmp_path / "s").resolve()
    assert config.api_tokens == (TOKEN,)
    assert config_from_args(parse(), env).allow_ae == ("PACS1", "PACS2")


def test_bad_flags_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="--workers"):
        config_from_args(parse("--workers", "0"), {})
    with pytest.raises(ConfigurationError, match="destination 'nowhere'"):
        config_from_args(parse("--results-to", "nowhere"), {})


def test_no_token_refuses_to_start_unless_insecure_dev(tmp_path: Path) -> None:
    args = parse("--storage", str(tmp_path))
    with pytest.raises(ConfigurationError, match="DIAGNOSTICS_API_TOKEN"):
        preflight(config_from_args(args, {}))
    insecure = config_from_args(parse("--storage", str(tmp_path), "--insecure-dev"), {})
    assert insecure.insecure_dev
    assert "cxr-demo" in preflight(insecure.model_copy(update={"port": _free_port()}))


def test_tls_needs_both_files_and_a_busy_port_is_named(tmp_path: Path) -> None:
    env = {"DIAGNOSTICS_API_TOKEN": TOKEN}
    with pytest.raises(ConfigurationError, match="--tls-cert and --tls-key"):
        preflight(config_from_args(parse("--tls-cert", str(tmp_path / "c.pem")), env))
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = parse("--port", str(port), "--storage", str(tmp_path))
        with pytest.raises(ConfigurationError, match=f"--port {port}"):
            preflight(config_from_args(args, env))


def test_the_server_gets_the_settings_but_the_usage_never_shows_the_token(tmp_path: Path) -> None:
    env = {"DIAGNOSTICS_API_TOKEN": TOKEN, "PATH": "/usr/bin"}
    config = config_from_args(parse("--workers", "2", "--storage", "rel/store"), env)
    child = server_environment(config, env)
    assert child["DIAGNOSTICS_API_TOKEN"] == TOKEN
    assert Path(child["DIAGNOSTICS_STORAGE"]).is_absolute()
    assert "services.diagnostics.workers=2" in child["BENTOML_CONFIG_OPTIONS"]
    command = server_command(config)
    assert command[2:5] == ["bentoml", "serve", "diagnostics.serving.service:Diagnostics"]
    text = usage(config, "cxr-demo 1.0.0")
    assert TOKEN not in text
    assert "/v1/screen" in text and "$DIAGNOSTICS_API_TOKEN" in text
    # A token file (scripts/run, the systemd unit) is read where the command runs.
    from_file = usage(config, "cxr-demo 1.0.0", "/etc/diagnostics/api tokens")
    assert "Bearer $(head -n 1 '/etc/diagnostics/api tokens')" in from_file
    assert "$DIAGNOSTICS_API_TOKEN" not in from_file and TOKEN not in from_file


def test_cli_error_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name in ("DIAGNOSTICS_API_TOKEN", "DIAGNOSTICS_API_TOKEN_FILE", "DIAGNOSTICS_INSECURE_DEV"):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve", "--storage", str(tmp_path), "--port", str(_free_port())]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ConfigurationError: no API token")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_fhir_destinations_and_their_credentials_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"DIAGNOSTICS_API_TOKEN": TOKEN}
    auth = tmp_path / "fhir-auth"
    auth.write_text("Bearer emr-secret-token\n")
    args = parse("--results-to", "fhir+https://emr.example.org/fhir/", "--results-auth-file", "x")
    config = config_from_args(args, env)
    assert config.results_to == ("fhir+https://emr.example.org/fhir/",)
    assert config.results_auth_file == Path("x").resolve()
    with pytest.raises(ConfigurationError, match="no host"):
        config_from_args(parse("--results-to", "fhir+https:///fhir"), env)
    with pytest.raises(ConfigurationError, match="results auth file"):
        preflight(config.model_copy(update={"storage": tmp_path}))
    auth.write_text("emr-secret-token")
    with pytest.raises(ConfigurationError, match="Bearer <token>") as error:
        preflight(config.model_copy(update={"storage": tmp_path, "results_auth_file": auth}))
    assert "emr-secret-token" not in str(error.value)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    help_text = capsys.readouterr().out
    assert "fhir+https://" in help_text and "--results-auth-file" in help_text


def test_without_the_bundled_model_the_error_asks_for_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An installed wheel has no models/cxr-demo beside it: `--model PATH` is then required."""
    absent = tmp_path / "models" / "cxr-demo"
    monkeypatch.setattr("diagnostics.serve.BUNDLED_MODEL", absent)
    args = parse("--storage", str(tmp_path), "--insecure-dev", "--port", str(_free_port()))
    config = config_from_args(args, {}).model_copy(update={"model": absent})
    with pytest.raises(ConfigurationError, match="give --model PATH or DIAGNOSTICS_MODEL"):
        preflight(config)
    with pytest.raises(DiagnosticsError, match="not a folder") as given:
        preflight(config.model_copy(update={"model": tmp_path / "elsewhere"}))
    assert "give --model" not in str(given.value)  # a path was given: the loader's own words


def test_the_report_language_comes_from_the_flag_or_its_variable(tmp_path: Path) -> None:
    assert config_from_args(parse(), {}).report_language == "en"
    env = {"DIAGNOSTICS_REPORT_LANGUAGE": "ru"}
    assert config_from_args(parse(), env).report_language == "ru"
    assert config_from_args(parse("--report-language", "uz"), env).report_language == "uz"
    with pytest.raises(ConfigurationError, match="DIAGNOSTICS_REPORT_LANGUAGE"):
        config_from_args(parse(), {"DIAGNOSTICS_REPORT_LANGUAGE": "fr"})
    with pytest.raises(SystemExit):
        parse("--report-language", "fr")


def test_bind_addresses_reach_the_server_and_the_banner(tmp_path: Path) -> None:
    args = parse(
        "--bind", "127.0.0.1", "--dicom-bind", "::1", "--allow-ae", "PACS",
        "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "192.0.2.7",
        "--accept-any-called-ae", "--storage", str(tmp_path),
    )  # fmt: skip
    config = config_from_args(args, {})
    command = server_command(config)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    text = usage(config, "cxr-demo 1.0.0")
    assert "HTTP on 127.0.0.1:3000, DICOM on [::1]:11112 as AE DIAGNOSTICS" in text
    assert "(any called AE title accepted)" in text
    assert "http://127.0.0.1:3000/docs" in text  # the bound address, not localhost (maybe ::1)
    assert "dcmsend -aet PACS -aec DIAGNOSTICS ::1 11112" in text  # host and port apart
    env = server_environment(config, {})
    assert env["DIAGNOSTICS_TRUSTED_PROXY"] == "10.0.0.0/8,192.0.2.7"
    assert env["DIAGNOSTICS_DICOM_BIND"] == "::1"
    everywhere = usage(config_from_args(parse("--storage", str(tmp_path)), {}), "m")
    assert "HTTP on 0.0.0.0:3000 (all interfaces), DICOM off" in everywhere
    elsewhere = usage(config_from_args(parse("--bind", "192.0.2.5"), {}), "m")
    assert "http://192.0.2.5:3000/v1/screen" in elsewhere  # the commands use what answers
    with pytest.raises(ConfigurationError, match=r"--bind: .*not an IP address"):
        config_from_args(parse("--bind", "example.org"), {})
    with pytest.raises(ConfigurationError, match=r"--trusted-proxy: .*not an IP address"):
        config_from_args(parse("--trusted-proxy", "10.0.0.0/33"), {})


def test_log_backups_zero_with_rotation_names_both_flags(tmp_path: Path) -> None:
    log = str(tmp_path / "service.log")
    with pytest.raises(ConfigurationError, match=r"--log-backups 0 .*--log-max-bytes"):
        config_from_args(parse("--log-file", log, "--log-backups", "0"), {})
    config = config_from_args(parse("--trusted-proxy", "10.0.0.5/24"), {})
    assert server_environment(config, {})["DIAGNOSTICS_TRUSTED_PROXY"] == "10.0.0.0/24"
