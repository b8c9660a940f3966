"""The admin page `/ui/models`: installed model versions, the active and shadow ones, the
history of changes, the shadow's agreement with radiologists, and the forms that change them.

The forms call the same audited actions as `diagnostics models` (`service/model_admin.py`); the
service follows the registry within seconds (`service/models.py`). Who may use the page is
`require_admin`'s one decision, as for the audit trail.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from diagnostics.api.auth import SESSION_KEY, actor_of
from diagnostics.errors import DiagnosticsError, RequestError
from diagnostics.i18n import N_
from diagnostics.package.registry import ModelRegistry, RegistryState
from diagnostics.results import FindingResult, StudyResult
from diagnostics.service import model_admin
from diagnostics.service.runtime import Runtime
from diagnostics.service.shadow_compare import ShadowComparison, compare_shadow, registry_records
from diagnostics.store.audit import iso
from diagnostics.ui import forms
from diagnostics.ui.audit_page import UI, require_admin

SECURITY_HEADERS = {"Cache-Control": "no-store"}
"""For the redirect after a post; the page itself gets the UI's own headers."""

ACTIONS = ("shadow", "unshadow", "promote", "rollback")


@dataclass(frozen=True)
class ModelsView:
    state: RegistryState
    serving: str | None
    """What this process screens with now (the registry's choice, once it has followed it)."""
    comparison: ShadowComparison | None
    comparison_error: str
    times: dict[float, str]


def models_view(runtime: Runtime) -> ModelsView:
    registry = ModelRegistry(runtime.config.storage)
    state = registry.state()
    comparison, error = None, ""
    if state.shadow is not None:
        try:
            comparison = compare_shadow(runtime.config.storage)
        except DiagnosticsError as exc:
            error = str(exc)
    stamps = [i.installed_at for i in state.installed] + [c.at for c in state.history]
    times = {at: iso(at).replace("T", " ")[:19] for at in stamps}
    serving = runtime.models.active_key if runtime.models is not None else None
    return ModelsView(state, serving, comparison, error, times)


@dataclass(frozen=True)
class ShadowRecord:
    """One shadow model's result for the study page's admin-only block."""

    model: str
    status: str
    findings: list[FindingResult]
    error: str


def shadow_block(runtime: Runtime, uid: str) -> list[ShadowRecord]:
    """Every stored shadow result of a study (one per shadow version that screened it)."""
    registry = ModelRegistry(runtime.config.storage)
    records = []
    for key, record in registry_records(registry, uid):
        result = record.get("result")
        if isinstance(result, dict):
            parsed = StudyResult.model_validate(result)
            records.append(ShadowRecord(key, parsed.status, list(parsed.findings), ""))
        else:
            records.append(ShadowRecord(key, "failed", [], str(record.get("error", ""))))
    return records


def change(runtime: Runtime, actor: str, action: str, form: dict[str, str]) -> str:
    """Apply one form's change; returns the version it concerns."""
    registry, store = ModelRegistry(runtime.config.storage), runtime.store
    version = forms.text(form, "version").strip()
    if action == "shadow":
        if not version:
            raise RequestError("choose a version to run in shadow")
        return model_admin.shadow(store, registry, version, actor).key
    if action == "unshadow":
        return model_admin.unshadow(store, registry, actor) or ""
    if action == "promote":
        reason = forms.text(form, "override_calibration").strip()
        entry, _ = model_admin.promote(store, registry, version or None, actor, reason)
        return entry.key
    return model_admin.rollback(store, registry, actor)[0].key


def models_routes(ui: UI) -> list[Route]:
    """`GET /ui/models` and its form posts, for the review UI's routes."""

    async def show(request: Request, error: str = "", status: int = 200) -> Response:
        runtime = ui.runtime()
        if runtime is None:
            return ui.message(request, 503, N_("Starting"), N_("The service is starting; retry."))
        if not require_admin(request.scope):
            return ui.message(
                request, 403, N_("Not allowed"), N_("The model registry is for administrators.")
            )
        view = await anyio.to_thread.run_sync(functools.partial(models_view, runtime))
        done = request.query_params.get("done", "")
        return ui.page(
            request,
            "models.html",
            status,
            view=view,
            error=error,
            done=done if done in ACTIONS else "",
            title=N_("Model versions"),
        )

    def post(action: str) -> Callable[[Request], Awaitable[Response]]:
        async def submit(request: Request) -> Response:
            runtime = ui.runtime()
            if runtime is None:
                return ui.message(
                    request, 503, N_("Starting"), N_("The service is starting; retry.")
                )
            if not require_admin(request.scope):
                return ui.message(
                    request,
                    403,
                    N_("Not allowed"),
                    N_("The model registry is for administrators."),
                )
            form = {k: str(v) for k, v in (await request.form()).items()}
            try:
                forms.check_csrf(request.scope.get(SESSION_KEY), form)
            except RequestError as exc:
                return ui.message(request, 403, N_("Not saved"), str(exc))
            call = functools.partial(change, runtime, actor_of(request.scope), action, form)
            try:
                await anyio.to_thread.run_sync(call)
            except DiagnosticsError as exc:
                return await show(request, error=str(exc), status=400)
            target = "/ui/models?" + urlencode({"done": action})
            return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)

        return submit

    routes = [Route("/models", show, methods=["GET"])]
    routes += [Route(f"/models/{a}", post(a), methods=["POST"]) for a in ACTIONS]
    return routes
