"""Service settings: command-line flags, each also read from a `DIAGNOSTICS_*` variable.

`diagnostics serve` passes its flags to the HTTP workers through the environment, so the
service process and the CLI read one definition: `ServiceSettings.to_env` writes the variables
and `ServiceSettings.from_env` reads them back (pydantic-settings). Settings built directly
(`ServiceSettings(storage=...)`) take only what they are given, never the environment.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from diagnostics.constants import BUNDLED_MODEL, DEFAULT_AE_TITLE, DEFAULT_MIN_FREE_DISK
from diagnostics.dicom.header import ReadLimits
from diagnostics.errors import ConfigurationError
from diagnostics.i18n import DEFAULT_LANGUAGE, Language
from diagnostics.screening.engines import EngineChoice
from diagnostics.service.logs import LogFormat, LogLevel
from diagnostics.service.sender import Destination
from diagnostics.service.viewer import check_timezone, check_viewer_url
from diagnostics.strict import STRICT

PREFIX = "DIAGNOSTICS_"

Listed = Annotated[tuple[str, ...], NoDecode]
"""A list setting: comma-separated in its variable (`PACS1,PACS2`), not JSON."""


class ServiceSettings(BaseSettings):
    # Strict as every contract (`diagnostics.strict.STRICT`), and validated like it: defaults
    # are trusted, as a plain model's are.
    model_config = SettingsConfigDict(
        frozen=STRICT["frozen"],
        extra=STRICT["extra"],
        env_prefix=PREFIX,
        env_ignore_empty=True,
        validate_default=False,
    )

    port: int = Field(default=3000, ge=1, le=65535)
    dicom_port: int = Field(default=11112, ge=0, le=65535)
    """0 picks a free port (tests)."""
    ae_title: str = Field(default=DEFAULT_AE_TITLE, pattern=r"^[ -\[\]-~]{1,16}$")
    storage: Path = Path("diagnostics-data")
    model: Path = BUNDLED_MODEL
    allow_ae: Listed = ()
    """Calling AE titles accepted by the DICOM listener; empty means no DICOM sender at all."""
    results_to: Listed = ()
    """Where results go: AE@HOST:PORT or STOW-RS URLs (SRs and overlays), or fhir+http(s)
    FHIR server base URLs (FHIR reports)."""
    results_token: str | None = None
    """Bearer token for STOW-RS destinations that need one."""
    results_auth_file: Path | None = None
    """Credentials for the FHIR destinations: a file holding `Bearer <token>` or
    `Basic <user>:<password>` (a file, so that the secret is on no command line)."""
    stable_seconds: float = Field(default=10.0, ge=0.0)
    """A study is screened once no instance has arrived for this long."""
    escalate_after_minutes: float = Field(default=60.0, gt=0.0)
    """An unread routine study waiting longer than this is escalated on the worklist."""
    screen_wait_seconds: float = Field(default=30.0, ge=0.0, le=240.0)
    """How long `POST /v1/screen` waits for a result before answering 202 (poll Location)."""
    lease_seconds: float = Field(default=45.0, ge=1.0, le=600.0)
    """A screening claim lasts this long unless renewed (every third of it) by a live process:
    the claim of a process that died is taken over within it."""
    workers: int = Field(default=1, ge=1, le=64)
    engine: EngineChoice = "onnxruntime"
    """The inference runtime: onnxruntime (the reference), openvino, or auto (the faster of the
    two on this machine, measured at start); OpenVINO only after a parity check
    (`diagnostics.screening.engines`)."""
    max_request_bytes: int = Field(default=512 << 20, ge=1 << 10)
    max_instance_bytes: int = Field(default=ReadLimits.max_file_bytes, ge=1 << 10)
    """Largest instance, counted after inflating a deflated dataset (`ReadLimits`)."""
    max_decoded_bytes: int = Field(default=ReadLimits.max_decoded_bytes, ge=1 << 20)
    """Per-instance decode budget: estimated peak memory of decoding one instance."""
    max_study_decoded_bytes: int = Field(default=ReadLimits.max_study_decoded_bytes, ge=1 << 20)
    """Per-study budget: the decoded images of one study together; intake refuses past it."""
    request_read_timeout_s: float = Field(default=60.0, gt=0.0)
    """A request body must arrive within this, plus one second per `min_upload_rate` bytes."""
    min_upload_rate: int = Field(default=64 << 10, ge=1)
    """Bytes per second a slow but honest upload is allowed; slower ones are cut off."""
    api_tokens: Listed = ()
    """Read only from DIAGNOSTICS_API_TOKEN or DIAGNOSTICS_API_TOKEN_FILE (`from_env`)."""
    insecure_dev: bool = False
    """Run without tokens (development only; logged loudly)."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # -- languages --
    report_language: Language = DEFAULT_LANGUAGE
    """The language of the FHIR reports' texts (uz, ru, en): recorded with each result's report
    context, so a result keeps the language its first report was written in."""
    # -- patient context and PACS viewer (issue #14) --
    timezone: str | None = None
    """IANA time zone for the times the review UI shows; default this machine's."""
    viewer_url: str | None = None
    """PACS viewer link on the review pages, with {study_uid}, {accession}, {patient_id}."""

    # -- retention and disk --
    retain_days: float | None = Field(default=None, gt=0.0)
    """Delete the images and output files of done studies whose newest result is older than
    this many days (results, worklist and audit stay); None keeps them forever."""
    min_free_disk: str = DEFAULT_MIN_FREE_DISK
    """Refuse new instances while the storage folder's disk has less free space than this
    (`2GiB`, `500MB`, bytes, or `5%` of the disk; `0` never refuses)."""

    # -- contact: addresses, called AE title, trusted proxies --
    bind: str = "0.0.0.0"
    """The address HTTP listens on (all interfaces by default: the PACS and the radiologists'
    browsers are on other machines; 127.0.0.1 behind a reverse proxy on the same host)."""
    dicom_bind: str | None = None
    """The address the DICOM listener listens on; None: the same as `bind`."""
    accept_any_called_ae: bool = False
    """Accept associations whatever called AE title they name (sites whose PACS cannot be
    told ours); by default one that does not name `ae_title` is rejected."""
    trusted_proxy: Listed = ()
    """Addresses or networks (CIDR) of TLS-terminating proxies whose X-Forwarded-Proto and
    X-Forwarded-For are believed; nobody's by default."""

    # -- logs --
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "text"
    """`json`: one object per line (time, level, logger, message and the event's fields)."""
    log_file: Path | None = None
    """Also written here (by `diagnostics serve`, the one writer); stderr always has it."""
    log_max_bytes: int = Field(default=10 << 20, ge=0)
    """The file is rotated past this size; 0: never here (logrotate moves it, it is reopened)."""
    log_backups: int = Field(default=5, ge=0, le=999)
    """Rotated files kept (`service.log.1` ...)."""
    # -- monitoring --
    monitor_days: int = Field(default=30, ge=1, le=366)
    """Days of daily statistics on `/ui/monitoring` (each a query of that window)."""
    drift_days: int = Field(default=7, ge=1, le=90)
    """The recent window compared with the package's reference distributions."""
    drift_threshold: float = Field(default=0.2, gt=0.0, allow_inf_nan=False)
    """Population stability index above which a distribution is in drift alarm."""
    drift_min_studies: int = Field(default=100, ge=1)
    """Studies needed in the window before drift is judged ("too few studies" below)."""
    monitor_refresh_seconds: float = Field(default=300.0, ge=0.0)
    """The statistics are recomputed at most this often (metrics and page reuse them)."""

    # -- database (issue #18: PostgreSQL, several nodes) --
    database_url: str | None = None
    """`postgresql://USER@HOST/DB`: the store's tables in PostgreSQL, shared by several nodes
    (the instance files stay in `storage`, which they share too); None or a `sqlite:` URL naming
    the storage folder's own database: SQLite there (the default)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what the caller gives: the environment is read by `from_env` alone."""
        return (init_settings,)

    @field_validator("allow_ae", "results_to", "trusted_proxy", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _split(value) if isinstance(value, str) else value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        """`info` or `INFO`, `JSON` or `json`."""
        if not isinstance(value, str):
            return value
        return value.lower() if value.lower() in ("text", "json") else value.upper()

    @field_validator("insecure_dev", "accept_any_called_ae", mode="before")
    @classmethod
    def _flag(cls, value: object) -> object:
        """A variable's `1`, `true` or `yes` (any case) turns it on; any other text off."""
        return value.lower() in ("1", "true", "yes") if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        """Never echoes the value: it may hold a password."""
        if value is not None and not value.startswith(("postgresql://", "postgres://", "sqlite:")):
            raise ValueError("not a database URL: sqlite:///PATH or postgresql://USER@HOST/DB")
        return value

    @field_validator("results_to")
    @classmethod
    def _check_destinations(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            Destination.parse(value)
        return values

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str | None) -> str | None:
        return check_timezone(value) if value is not None else None

    @field_validator("viewer_url")
    @classmethod
    def _check_viewer_url(cls, value: str | None) -> str | None:
        return check_viewer_url(value) if value is not None else None

    @field_validator("min_free_disk")
    @classmethod
    def _check_min_free(cls, value: str) -> str:
        from diagnostics.service.retention import MinFree  # the loops it imports are heavy

        try:
            MinFree.parse(value)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("bind", "dicom_bind")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not an IP address (e.g. 0.0.0.0, 127.0.0.1 or ::)"
                ) from None
        return value

    @field_validator("trusted_proxy")
    @classmethod
    def _check_proxies(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return tuple(proxy_address(value) for value in values)
        except ValueError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _check_rotation(self) -> ServiceSettings:
        """Python's rotating handler never rolls over without backups: the file would grow
        without the bound `log_max_bytes` promises."""
        if self.log_file is not None and self.log_max_bytes > 0 and self.log_backups == 0:
            raise ValueError(
                "--log-backups 0 (DIAGNOSTICS_LOG_BACKUPS) with --log-max-bytes > 0 "
                "(DIAGNOSTICS_LOG_MAX_BYTES) would never rotate: keep at least 1 backup, or "
                "--log-max-bytes 0 to leave rotation to logrotate"
            )
        return self

    @property
    def listen_dicom(self) -> str:
        """The address the DICOM listener binds."""
        return self.dicom_bind if self.dicom_bind is not None else self.bind

    @field_validator("api_tokens")
    @classmethod
    def _check_tokens(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        short = [t for t in values if len(t) < 16]
        if short:
            raise ValueError("API tokens must be at least 16 characters long")
        return values

    def read_limits(self) -> ReadLimits:
        """The size limits every door (HTTP, DICOM, screening, review page) reads with."""
        return ReadLimits(
            max_file_bytes=self.max_instance_bytes,
            max_decoded_bytes=self.max_decoded_bytes,
            max_study_decoded_bytes=self.max_study_decoded_bytes,
        )

    def require_auth(self) -> None:
        if not self.api_tokens and not self.insecure_dev:
            raise ConfigurationError(
                "no API token configured: set DIAGNOSTICS_API_TOKEN (or DIAGNOSTICS_API_TOKEN_FILE)"
                ", or start with --insecure-dev for local development only"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        """The settings the `DIAGNOSTICS_*` variables of `environ` (default: this process's
        environment) give; unset and empty variables leave the default."""
        env = os.environ if environ is None else environ
        values = _Environment(cls, env)()
        values.pop("api_tokens", None)
        values.update(_tokens(env))
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                if e["loc"]
                else e["msg"]  # a check across settings names them itself
                for e in exc.errors()
            )
            raise ConfigurationError(f"invalid service settings: {problems}") from exc

    def to_env(self) -> dict[str, str]:
        out = {}
        for name, value in self.model_dump().items():
            if value is None or name == "api_tokens":
                continue
            text = ",".join(value) if isinstance(value, tuple) else str(value)
            out[f"{PREFIX}{name.upper()}"] = text
        if self.api_tokens:
            out[f"{PREFIX}API_TOKEN"] = ",".join(self.api_tokens)
        return out


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            (name if self.case_sensitive else name.lower()): value
            for name, value in self._environ.items()
            if not (self.env_ignore_empty and value == "")
        }

    def __call__(self) -> dict[str, Any]:
        return dict(super().__call__())


def proxy_address(value: str) -> str:
    """A trusted proxy as uvicorn's `FORWARDED_ALLOW_IPS` matches it: a network in its
    canonical form (uvicorn parses networks strictly, so `10.0.0.5/24`, accepted here, would
    silently trust nobody), a plain address as it is."""
    try:
        if "/" in value:
            return str(ipaddress.ip_network(value, strict=False))
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)"
        ) from None


def forwarded_allow_ips(raw: str) -> str:
    """`FORWARDED_ALLOW_IPS` for a `DIAGNOSTICS_TRUSTED_PROXY` value, however it was set (by
    `diagnostics serve` or by hand); an invalid entry is left out (trusted by nobody) and
    reported by the settings' own check."""
    out = []
    for value in _split(raw):
        try:
            out.append(proxy_address(value))
        except ValueError:
            continue
    return ",".join(out)


def _split(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _tokens(env: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    tokens = list(_split(env.get("DIAGNOSTICS_API_TOKEN", "")))
    token_file = env.get("DIAGNOSTICS_API_TOKEN_FILE")
    if token_file:
        try:
            text = Path(token_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"DIAGNOSTICS_API_TOKEN_FILE {token_file}: {exc}") from exc
        tokens += [line.strip() for line in text.splitlines() if line.strip()]
    return {"api_tokens": tuple(tokens)} if tokens else {}
