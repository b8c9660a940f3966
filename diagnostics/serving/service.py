"""The diagnostics HTTP service (BentoML): wiring only; the work is done in `diagnostics.api`.

Run it with `diagnostics serve` (which validates the settings first and passes them on in
`DIAGNOSTICS_*` variables), or directly:

    DIAGNOSTICS_API_TOKEN=... BENTOML_HOME=<storage>/bentoml \
        bentoml serve diagnostics.serving.service:Diagnostics

(`diagnostics serve` sets BENTOML_HOME so: the metrics folder then is this instance's own.)

Routes (docs/architecture.md): `POST /v1/screen`, STOW-RS `POST /dicomweb/studies`,
`GET /v1/studies/{uid}`, `GET /v1/worklist` (a mounted Starlette app, because they take raw
DICOM bodies or GET parameters), `POST /v1/infer` (BentoML's adaptive batching, preprocessed
tensors in, probabilities out), the review UI under `/ui` (`diagnostics.ui`), the API page
`/docs` and `/docs.json` (`diagnostics.api.docs`, in place of BentoML's page at `/`), and
BentoML's own `/healthz`, `/livez`, `/readyz`; `/metrics` is ours (`diagnostics.api.metrics`).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException
from pydantic import AfterValidator

from diagnostics.api import (
    AuthPolicy,
    BearerAuth,
    BodyReadTimeout,
    BodySizeLimit,
    ServiceMetrics,
    create_app,
)
from diagnostics.api.docs import docs_routes
from diagnostics.api.errors import JsonErrors
from diagnostics.api.health import IntakeHealth
from diagnostics.api.privacy import keep_patient_data_out_of_logs
from diagnostics.api.refusals import RefusalLog
from diagnostics.api.session import SessionCodec
from diagnostics.api.tensors import check_tensors, infer_probabilities
from diagnostics.api.traffic import RequestMetrics
from diagnostics.errors import ConfigurationError, RequestError
from diagnostics.service.logs import configure_process_logging
from diagnostics.service.runtime import Runtime, stop_on_signals
from diagnostics.service.settings import ServiceSettings, forwarded_allow_ips
from diagnostics.store import open_users
from diagnostics.ui import create_ui

log = logging.getLogger("bentoml.serve.diagnostics")

# uvicorn believes X-Forwarded-Proto and -For from the addresses in FORWARDED_ALLOW_IPS
# (127.0.0.1 when unset): only from the proxies of --trusted-proxy, nobody's by default, so the
# session cookie is `Secure` behind a TLS-terminating proxy and a client cannot claim https.
# The worker builds its server after importing this module, so this is what it reads.
# Normalised as uvicorn parses it: `10.0.0.5/24` would otherwise silently trust nobody.
os.environ["FORWARDED_ALLOW_IPS"] = forwarded_allow_ips(
    os.environ.get("DIAGNOSTICS_TRUSTED_PROXY", "")
)


def _configure_logging() -> None:
    """Our level and format in this process, on stderr, which `diagnostics serve` relays to
    the log file. Done on import: BentoML has set up its own logging by then, in its arbiter
    and in each worker (`configure_server_logging`); an invalid setting is left to
    `Diagnostics()` to report."""
    try:
        config = ServiceSettings.from_env()
    except ConfigurationError:
        return
    configure_process_logging(config.log_level, config.log_format, sys.stderr)


_configure_logging()


def _current() -> Diagnostics | None:
    try:
        service = bentoml.get_current_service()
    except BentoMLException:
        return None  # not built yet: the middleware answers 503
    return service  # type: ignore[no-any-return]


def _runtime() -> Runtime | None:
    service = _current()
    return service.runtime if service is not None else None


def _metrics() -> ServiceMetrics | None:
    service = _current()
    return service.metrics if service is not None else None


def _auth() -> AuthPolicy | None:
    service = _current()
    return service.auth if service is not None else None


def _max_bytes() -> int | None:
    service = _current()
    return service.config.max_request_bytes if service is not None else None


def _read_pace() -> tuple[float, int] | None:
    service = _current()
    if service is None:
        return None
    return service.config.request_read_timeout_s, service.config.min_upload_rate


def _valid_tensors(images: np.ndarray) -> np.ndarray:
    """Checked per request, before BentoML merges requests into one batch."""
    runtime = _runtime()
    if runtime is None or runtime.screener is None:
        raise ValueError("the model is not loaded yet")
    try:
        return check_tensors(runtime.screener, images)
    except RequestError as exc:
        raise ValueError(str(exc)) from None


Tensors = Annotated[np.ndarray, AfterValidator(_valid_tensors)]


@functools.cache
def _openapi_document() -> dict[str, Any]:
    return dict(Diagnostics.openapi_spec.asdict())  # type: ignore[attr-defined]


def _openapi() -> dict[str, Any] | None:
    """The OpenAPI document BentoML builds for the whole service, once it is built."""
    return _openapi_document() if _current() is not None else None


http_app = create_app(
    _runtime, _metrics, extra_routes=[create_ui(_runtime, _auth), *docs_routes(_openapi)]
)


@bentoml.asgi_app(http_app, path="/")
# BentoML's HTTP metrics and access log name requests by raw path: ours use the route template.
@bentoml.service(
    name="diagnostics",
    workers=1,
    traffic={"timeout": 300},
    metrics={"enabled": False},
    logging={"access": {"enabled": False}},
)
class Diagnostics:
    """Radiology AI pre-screening: DICOM in, StudyResult JSON and DICOM results out."""

    def __init__(self) -> None:
        keep_patient_data_out_of_logs()
        config = ServiceSettings.from_env()
        config.require_auth()
        if config.insecure_dev and not config.api_tokens:
            log.warning(
                "INSECURE DEVELOPMENT MODE: no API token, every request is accepted "
                "(DIAGNOSTICS_INSECURE_DEV=1). Never run like this with patient data."
            )
        self.config = config
        self.metrics = ServiceMetrics()
        self.runtime = Runtime(
            config, on_batch=self.metrics.observe_batch, on_received=self.metrics.count_received
        )
        self.auth = AuthPolicy(
            config.api_tokens,
            insecure_dev=config.insecure_dev,
            refusals=RefusalLog(
                self.runtime.store.audit, on_refusal=self.metrics.count_auth_failure
            ),
            sessions=SessionCodec.for_storage(config.storage, database=config.database_url),
            users=open_users(config.storage, database=config.database_url),
        )
        self.runtime.start()
        log.info("%s", self.runtime.ready_line())
        # Built in the server's main thread after it set its own handlers: ours come first,
        # so requests waiting on a screening answer (202) before the server waits for them.
        stop_on_signals(self.runtime)

    def __is_ready__(self) -> bool:
        return self.runtime.ready

    @bentoml.on_shutdown  # type: ignore[untyped-decorator]
    def shutdown(self) -> None:
        if self.auth.refusals is not None:
            self.auth.refusals.close()  # the current minute's refusals, audited
        self.runtime.stop()

    @bentoml.api(  # type: ignore[untyped-decorator]
        route="/v1/infer", batchable=True, max_batch_size=16, max_latency_ms=200
    )
    def infer(self, images: Tensors) -> np.ndarray:
        """Preprocessed float32 images [N, C, H, W] -> calibrated probabilities [N, K]."""
        screener = self.runtime.screener
        if screener is None:
            raise BentoMLException("the model is not loaded yet")
        return infer_probabilities(screener, images)


# The first added is the outermost: requests are counted by what the client got, and every
# error below JsonErrors, ours or BentoML's, answers JSON.
# (`bentoml.service` made the class a Service object; mypy still sees the class.)
Diagnostics.add_asgi_middleware(RequestMetrics, metrics=_metrics)  # type: ignore[attr-defined]
Diagnostics.add_asgi_middleware(JsonErrors)  # type: ignore[attr-defined]
Diagnostics.add_asgi_middleware(BearerAuth, policy=_auth)  # type: ignore[attr-defined]
Diagnostics.add_asgi_middleware(BodySizeLimit, max_bytes=_max_bytes)  # type: ignore[attr-defined]
Diagnostics.add_asgi_middleware(BodyReadTimeout, pace=_read_pace)  # type: ignore[attr-defined]
Diagnostics.add_asgi_middleware(IntakeHealth, runtime=_runtime)  # type: ignore[attr-defined]
