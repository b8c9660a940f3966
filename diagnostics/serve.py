"""`diagnostics serve`: check the settings, say how to send a study, then run the BentoML service.

Every flag defaults from its `DIAGNOSTICS_*` variable (`ServiceSettings.from_env`), so the
command line, a systemd unit or a container can configure the service the same way. The
settings are validated, and the model package verified, before anything starts; the service
process (`bentoml serve diagnostics.serving.service:Diagnostics`) gets them in its environment
(`ServiceSettings.to_env`). SIGTERM and SIGINT are forwarded to it and its exit status returned.

Tokens are read only from `DIAGNOSTICS_API_TOKEN` or `DIAGNOSTICS_API_TOKEN_FILE`: a token on
the command line would be visible to every user of the machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.constants import BUNDLED_MODEL, DEFAULT_MIN_FREE_DISK, ENGINE_CHOICES
from diagnostics.errors import ConfigurationError
from diagnostics.i18n import LANGUAGES
from diagnostics.serving.banner import usage
from diagnostics.serving.supervise import run_server, start_logging

if TYPE_CHECKING:
    from diagnostics.service.settings import ServiceSettings

LIBRARY_ROOT = Path(__file__).resolve().parent.parent
"""The folder holding this `diagnostics` package (a source checkout or site-packages): the
server process imports the service, and the library, from the same copy as this command."""
SERVICE = "diagnostics.serving.service:Diagnostics"
SERVICE_NAME = "diagnostics"
BENTOML_HOME = "bentoml"
"""BentoML's home inside the storage folder (metrics files, its task store)."""
GRACEFUL_SHUTDOWN_S = 5
"""Seconds the HTTP server waits for requests in flight after SIGTERM."""

FLAGS: dict[str, str] = {
    "port": "--port",
    "dicom_port": "--dicom-port",
    "ae_title": "--ae-title",
    "storage": "--storage",
    "model": "--model",
    "allow_ae": "--allow-ae",
    "results_to": "--results-to",
    "results_auth_file": "--results-auth-file",
    "stable_seconds": "--stable-seconds",
    "escalate_after_minutes": "--escalate-after-minutes",
    "screen_wait_seconds": "--screen-wait-seconds",
    "workers": "--workers",
    "engine": "--engine",
    "insecure_dev": "--insecure-dev",
    "tls_cert": "--tls-cert",
    "tls_key": "--tls-key",
    # -- languages --
    "report_language": "--report-language",
    # -- patient context and PACS viewer (issue #14) --
    "timezone": "--timezone",
    "viewer_url": "--viewer-url",
    # -- retention and disk --
    "retain_days": "--retain-days",
    "min_free_disk": "--min-free-disk",
    # -- contact --
    "bind": "--bind",
    "dicom_bind": "--dicom-bind",
    "accept_any_called_ae": "--accept-any-called-ae",
    "trusted_proxy": "--trusted-proxy",
    # -- logs --
    "log_level": "--log-level",
    "log_format": "--log-format",
    "log_file": "--log-file",
    "log_max_bytes": "--log-max-bytes",
    "log_backups": "--log-backups",
    # -- monitoring --
    "monitor_days": "--monitor-days",
    "drift_days": "--drift-days",
    "drift_threshold": "--drift-threshold",
    "drift_min_studies": "--drift-min-studies",
    "monitor_refresh_seconds": "--monitor-refresh-seconds",
    # -- database --
    "database_url": "--database",
}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the HTTP and DICOM service",
        description=(
            "Run the screening service: HTTP API (BentoML) with STOW-RS, and a DICOM C-STORE\n"
            "listener for the AE titles given with --allow-ae. Every flag defaults from its\n"
            "DIAGNOSTICS_* variable (e.g. --port from DIAGNOSTICS_PORT). HTTP clients need a\n"
            "bearer token from DIAGNOSTICS_API_TOKEN (comma-separated for several) or from\n"
            "the file named by DIAGNOSTICS_API_TOKEN_FILE; without one the service refuses to\n"
            "start unless --insecure-dev is given."
        ),
        epilog=(
            "examples:\n"
            "  DIAGNOSTICS_API_TOKEN=$(openssl rand -hex 24) diagnostics serve --allow-ae PACS\n"
            "  diagnostics serve --port 8080 --storage /var/lib/diagnostics \\\n"
            "      --results-to PACS@pacs.example.org:104 --workers 2\n"
            "  diagnostics serve --results-to fhir+https://emr.example.org/fhir \\\n"
            "      --results-auth-file /etc/diagnostics/fhir-auth   # reports to the EMR\n"
            "  diagnostics serve --insecure-dev   # local development only"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = serve.add_argument
    add("--port", type=int, help="HTTP port (DIAGNOSTICS_PORT, default 3000)")
    add("--dicom-port", type=int, help="DICOM port (DIAGNOSTICS_DICOM_PORT, default 11112)")
    add("--ae-title", help="our AE title (DIAGNOSTICS_AE_TITLE, default DIAGNOSTICS)")
    add(
        "--storage",
        type=Path,
        help="storage folder (DIAGNOSTICS_STORAGE, default ./diagnostics-data)",
    )
    add("--model", type=Path, help="model package (DIAGNOSTICS_MODEL, default the bundled model)")
    add(
        "--allow-ae",
        action="append",
        metavar="TITLE",
        help="calling AE title allowed to send (repeatable; DIAGNOSTICS_ALLOW_AE, comma-separated)",
    )
    add(
        "--results-to",
        action="append",
        metavar="AE@HOST:PORT|URL|fhir+URL",
        help="where results go: a PACS (AE@HOST:PORT or STOW-RS URL) gets SRs and overlays, a "
        "FHIR server (fhir+https://host/fhir) gets FHIR R4 reports (repeatable; "
        "DIAGNOSTICS_RESULTS_TO)",
    )
    add(
        "--results-auth-file",
        type=Path,
        metavar="FILE",
        help="credentials for fhir+ destinations: one line, 'Bearer <token>' or "
        "'Basic <user>:<password>' (DIAGNOSTICS_RESULTS_AUTH_FILE)",
    )
    add(
        "--stable-seconds",
        type=float,
        help="screen a study once quiet this long (DIAGNOSTICS_STABLE_SECONDS, default 10)",
    )
    add(
        "--escalate-after-minutes",
        type=float,
        help="escalate unread routine studies waiting this long "
        "(DIAGNOSTICS_ESCALATE_AFTER_MINUTES, default 60)",
    )
    add(
        "--screen-wait-seconds",
        type=float,
        help="POST /v1/screen answers 202 (poll the study) after waiting this long for a "
        "result (DIAGNOSTICS_SCREEN_WAIT_SECONDS, default 30)",
    )
    add("--workers", type=int, help="HTTP worker processes (DIAGNOSTICS_WORKERS, default 1)")
    add(
        "--engine",
        choices=ENGINE_CHOICES,
        help="inference runtime: onnxruntime, openvino (after a parity check against ONNX "
        "Runtime) or auto, the faster of the two measured at start (DIAGNOSTICS_ENGINE, "
        "default onnxruntime)",
    )
    add(
        "--insecure-dev",
        action="store_const",
        const=True,
        help="run without API tokens: development only (DIAGNOSTICS_INSECURE_DEV=1)",
    )
    add("--tls-cert", type=Path, help="TLS certificate for HTTP and DICOM (DIAGNOSTICS_TLS_CERT)")
    add("--tls-key", type=Path, help="TLS private key (DIAGNOSTICS_TLS_KEY)")
    # -- languages --
    add(
        "--report-language",
        choices=LANGUAGES,
        help="language of the FHIR reports' conclusion and texts: uz (Uzbek, Latin script), ru "
        "or en (DIAGNOSTICS_REPORT_LANGUAGE, default en)",
    )
    # -- patient context and PACS viewer (issue #14) --
    add(
        "--timezone",
        metavar="ZONE",
        help="IANA time zone of the times the review UI shows, e.g. Asia/Tashkent "
        "(DIAGNOSTICS_TIMEZONE, default this machine's)",
    )
    add(
        "--viewer-url",
        metavar="TEMPLATE",
        help="link to the study in the PACS viewer on the review pages: an http(s):// or "
        "weasis:// URL with {study_uid}, {accession} or {patient_id}, e.g. "
        "'http://pacs:8042/ohif/viewer?StudyInstanceUIDs={study_uid}' (DIAGNOSTICS_VIEWER_URL)",
    )
    # -- retention and disk --
    add(
        "--retain-days",
        type=float,
        help="delete stored images and output files of done studies whose result is older "
        "than this many days; results, worklist and audit stay (DIAGNOSTICS_RETAIN_DAYS; "
        "default: keep forever)",
    )
    add(
        "--min-free-disk",
        help="refuse new instances (C-STORE 0xA700, HTTP 507) while the storage disk has less "
        "free space: 2GiB, 500MB or 5%% (DIAGNOSTICS_MIN_FREE_DISK; "
        f"default {DEFAULT_MIN_FREE_DISK}; 0: never)",
    )
    # -- contact --
    add(
        "--bind",
        metavar="ADDRESS",
        help="address HTTP listens on, and DICOM unless --dicom-bind (DIAGNOSTICS_BIND, "
        "default 0.0.0.0: all interfaces; 127.0.0.1 behind a proxy on this host)",
    )
    add(
        "--dicom-bind",
        metavar="ADDRESS",
        help="address the DICOM listener listens on (DIAGNOSTICS_DICOM_BIND, default --bind)",
    )
    add(
        "--accept-any-called-ae",
        action="store_const",
        const=True,
        help="accept associations whatever called AE title they name; by default only "
        "--ae-title (DIAGNOSTICS_ACCEPT_ANY_CALLED_AE=1)",
    )
    add(
        "--trusted-proxy",
        action="append",
        metavar="IP|CIDR",
        help="a TLS-terminating reverse proxy whose X-Forwarded-Proto/-For are believed "
        "(repeatable; DIAGNOSTICS_TRUSTED_PROXY, comma-separated; default none)",
    )
    # -- logs --
    add(
        "--log-level",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="least severe level logged (DIAGNOSTICS_LOG_LEVEL, default INFO)",
    )
    add(
        "--log-format",
        type=str.lower,
        choices=("text", "json"),
        help="text lines, or one JSON object per line (DIAGNOSTICS_LOG_FORMAT, default text)",
    )
    add(
        "--log-file",
        type=Path,
        metavar="PATH",
        help="also log to this file; stderr always has the log (DIAGNOSTICS_LOG_FILE)",
    )
    add(
        "--log-max-bytes",
        type=int,
        metavar="N",
        help="rotate the log file past N bytes; 0: leave rotation to logrotate, the file is "
        "reopened when moved (DIAGNOSTICS_LOG_MAX_BYTES, default 10485760)",
    )
    add(
        "--log-backups",
        type=int,
        metavar="N",
        help="rotated log files kept (DIAGNOSTICS_LOG_BACKUPS, default 5)",
    )
    # -- monitoring --
    add(
        "--monitor-days",
        type=int,
        metavar="N",
        help="days of daily statistics on /ui/monitoring (DIAGNOSTICS_MONITOR_DAYS, default 30)",
    )
    add(
        "--drift-days",
        type=int,
        metavar="N",
        help="recent days compared with the model's reference distributions "
        "(DIAGNOSTICS_DRIFT_DAYS, default 7)",
    )
    add(
        "--drift-threshold",
        type=float,
        metavar="PSI",
        help="population stability index above which drift is alarmed "
        "(DIAGNOSTICS_DRIFT_THRESHOLD, default 0.2)",
    )
    add(
        "--drift-min-studies",
        type=int,
        metavar="N",
        help="studies needed before drift is judged (DIAGNOSTICS_DRIFT_MIN_STUDIES, default 100)",
    )
    add(
        "--monitor-refresh-seconds",
        type=float,
        metavar="S",
        help="recompute monitoring statistics at most this often "
        "(DIAGNOSTICS_MONITOR_REFRESH_SECONDS, default 300)",
    )
    # -- database --
    add(
        "--database",
        dest="database_url",
        metavar="URL",
        help="postgresql://USER@HOST/DB: the store in PostgreSQL, shared by several nodes "
        "(password from PGPASSWORD or ~/.pgpass); default SQLite in --storage "
        "(DIAGNOSTICS_DATABASE_URL)",
    )
    serve.set_defaults(handler=run)


def config_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ServiceSettings:
    """The environment's settings with the flags given on top; errors name the flag."""
    from pydantic import ValidationError

    from diagnostics.service.settings import ServiceSettings

    base = ServiceSettings.from_env(environ)
    values = base.model_dump()
    for field in FLAGS:
        value = getattr(args, field, None)
        if value is not None:
            values[field] = tuple(value) if isinstance(value, list) else value
    try:
        config = ServiceSettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{FLAGS.get(str(e['loc'][0]), str(e['loc'][0]))}: {e['msg']}"
            if e["loc"]
            else e["msg"]  # a check across settings names them itself
            for e in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None
    absolute = {"storage": config.storage.resolve(), "model": config.model.resolve()}
    for name in ("tls_cert", "tls_key", "results_auth_file"):
        path = getattr(config, name)
        if path is not None:
            absolute[name] = path.resolve()
    return config.model_copy(update=absolute)


def preflight(config: ServiceSettings) -> str:
    """Everything that can be checked before starting; returns the model's name and version."""
    from diagnostics.fhir.client import authorization
    from diagnostics.package import load_package

    config.require_auth()
    if config.results_auth_file is not None:
        authorization(config.results_auth_file)  # readable and well formed; never printed
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigurationError("--tls-cert and --tls-key go together: give both or neither")
    for flag, path in (("--tls-cert", config.tls_cert), ("--tls-key", config.tls_key)):
        if path is not None and not path.is_file():
            raise ConfigurationError(f"{flag} {path}: no such file")
    try:
        config.storage.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"--storage {config.storage}: {exc.strerror}") from None
    if not os.access(config.storage, os.W_OK):
        raise ConfigurationError(f"--storage {config.storage}: not writable")
    if config.model == BUNDLED_MODEL and not BUNDLED_MODEL.is_dir():
        raise ConfigurationError(
            f"--model: no model package given and no bundled model at {BUNDLED_MODEL} (it is "
            "only in a source checkout): give --model PATH or DIAGNOSTICS_MODEL"
        )
    manifest = load_package(config.model).manifest
    _check_port("--port", config.bind, config.port)
    if config.allow_ae and config.dicom_port:
        _check_port("--dicom-port", config.listen_dicom, config.dicom_port)
    return served_model(config.storage, manifest.name, manifest.version, manifest.sha256)


def served_model(storage: Path, name: str, version: str, sha256: str) -> str:
    """What the service will screen with: `--model` when the registry does not hold it yet
    (it is installed and made active), else the registry's active version."""
    from diagnostics.package.registry import ModelRegistry, package_key

    state = ModelRegistry(storage).state()
    installed = {item.key: item.sha256 for item in state.installed}
    if state.active is None or installed.get(package_key(name, version)) != sha256:
        return f"{name} {version}"
    active = state.entry(state.active)
    return f"{active.name} {active.version}"


def _check_port(flag: str, address: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            raise ConfigurationError(f"{flag} {port} on {address}: {exc.strerror}") from None


def server_command(config: ServiceSettings) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE,
        "--host",
        config.bind,
        "--port",
        str(config.port),
        "--working-dir",
        str(LIBRARY_ROOT),
        # Requests waiting on a screening answer at SIGTERM (`stop_on_signals`); this bounds
        # any other request, so a stopping service ends in seconds, not minutes.
        "--timeout-graceful-shutdown",
        str(GRACEFUL_SHUTDOWN_S),
    ]
    if config.tls_cert is not None and config.tls_key is not None:
        command += ["--ssl-certfile", str(config.tls_cert), "--ssl-keyfile", str(config.tls_key)]
    return command


def server_environment(
    config: ServiceSettings, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = dict(os.environ if environ is None else environ)
    env.update(config.to_env())
    # BentoML's home, and so its Prometheus multiprocess folder, which it empties at start:
    # one per instance in its storage, never ~/bentoml, shared by every service on the host.
    env["BENTOML_HOME"] = str(config.storage / BENTOML_HOME)
    options = f"services.{SERVICE_NAME}.workers={config.workers}"
    existing = env.get("BENTOML_CONFIG_OPTIONS", "").strip()
    env["BENTOML_CONFIG_OPTIONS"] = f"{existing} {options}".strip()
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")  # no usage analytics from a hospital network
    return env


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    handlers = start_logging(config)
    model = preflight(config)
    print(usage(config, model, os.environ.get("DIAGNOSTICS_API_TOKEN_FILE")), flush=True)
    code = run_server(server_command(config), server_environment(config), handlers, config)
    # The server has stopped and this process holds nothing else: skip unloading what the
    # preflight imported (torch alone takes seconds), so that SIGTERM ends it in seconds.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
