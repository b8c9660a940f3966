"""The review UI's routes under `/ui`: sign-in, worklist, study page, images, feedback.

Plain server-rendered HTML (Jinja2 templates), one CSS and one JavaScript file, no external
resources: it works offline, inside a hospital network, and under a strict Content Security
Policy (no inline script or style). The authentication middleware (`diagnostics.api.auth`)
lets only the sign-in page and the static files through without a session; the handlers
here read the actor and session it recorded, check CSRF on every form post, and audit what
people open and record. The work is done by `diagnostics.ui.pages`, `render` and
`diagnostics.service.review`; the handlers run it in worker threads.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import tzinfo
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import anyio.to_thread
from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from diagnostics.api.auth import SESSION_KEY, AuthPolicy, actor_of, client_actor
from diagnostics.api.params import whole_number
from diagnostics.api.session import COOKIE, LOGIN_COOKIE, Session, cookie_header, read_cookie
from diagnostics.api.status import error_body
from diagnostics.dicom.image import DicomImage
from diagnostics.dicom.reader import read_instance
from diagnostics.errors import DiagnosticsError, InputError, RequestError, StoreError
from diagnostics.i18n import N_, translator
from diagnostics.reports._common import DISCLAIMER
from diagnostics.service.review import record_feedback, set_requested_priority
from diagnostics.service.runtime import Runtime
from diagnostics.store import UserStore
from diagnostics.ui import forms, language, render
from diagnostics.ui.audit_page import audit_route, require_admin
from diagnostics.ui.models_page import models_routes, shadow_block
from diagnostics.ui.monitoring_page import monitoring_route
from diagnostics.ui.pages import (
    PRIORITIES,
    STATUSES,
    VERDICTS,
    plain,
    study_page,
    when,
    worklist_page,
)
from diagnostics.ui.patient import dash, zone_named
from diagnostics.ui.render import DisplayWindow, ImageCache, heatmap_png, image_png
from diagnostics.ui.signin import PasswordSignIn, Refused, remember_language, token_sign_in
from diagnostics.ui.triage import neighbours, read_and_move_on
from diagnostics.ui.users_page import users_routes
from diagnostics.ui.viewer import PRESETS

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
LOGIN_TTL_S = 600

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    # Patient images must not linger in a shared workstation's browser cache.
}

RuntimeSource = Callable[[], Runtime | None]
PolicySource = Callable[[], AuthPolicy | None]
T = TypeVar("T")


def create_ui(runtime: RuntimeSource, policy: PolicySource) -> Mount:
    """The `/ui` mount; `runtime` and `policy` are looked up per request."""
    ui = ReviewUI(runtime, policy)
    return Mount(
        "/ui",
        routes=[
            Route("/", ui.worklist, methods=["GET"]),
            Route("/login", ui.login_page, methods=["GET"]),
            Route("/login", ui.login, methods=["POST"]),
            Route("/logout", ui.logout, methods=["POST"]),
            Route("/studies/{uid}", ui.study, methods=["GET"]),
            # {index} as text: Starlette's int convertor raises (a 500) past 4300 digits.
            Route("/studies/{uid}/image/{index}.png", ui.image, methods=["GET"]),
            Route("/studies/{uid}/heatmap/{index}.png", ui.heatmap, methods=["GET"]),
            Route("/studies/{uid}/feedback", ui.feedback, methods=["POST"]),
            Route("/studies/{uid}/priority", ui.priority, methods=["POST"]),
            Route("/studies/{uid}/read", ui.read, methods=["POST"]),
            audit_route(ui),
            monitoring_route(ui),
            *models_routes(ui),
            *users_routes(ui),
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        ],
    )


async def _in_thread(call: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(call)


class ReviewUI:
    def __init__(self, runtime: RuntimeSource, policy: PolicySource) -> None:
        self._runtime = runtime
        self._policy = policy
        self.images = ImageCache()
        self._environments: dict[str, Environment] = {}
        self.passwords = PasswordSignIn()

    def templates(self, lang: str) -> Environment:
        """The Jinja2 environment speaking `lang`, built on first use."""
        env = self._environments.get(lang)
        if env is None:
            filters = (("when", self._when), ("dash", dash))
            env = self._environments[lang] = language.environment(lang, TEMPLATES, filters)
        return env

    # -- helpers ----------------------------------------------------------------------------

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        session: Session | None = request.scope.get(SESSION_KEY)
        choice = language.choose(request)  # a named user's own choice included
        t = translator(choice.language)
        context["title"] = t.gettext(context.get("title") or N_("Review"))
        html = (
            self.templates(choice.language)
            .get_template(template)
            .render(
                actor=session.actor if session else None,
                admin=require_admin(request.scope),
                csrf=session.csrf if session else "",
                notice=t.gettext(DISCLAIMER),
                statuses={k: t.gettext(v) for k, v in STATUSES.items()},
                priorities={k: t.gettext(v) for k, v in PRIORITIES.items()},
                verdicts={k: t.gettext(v) for k, v in VERDICTS.items()},
                lang=choice.language,
                languages=language.languages(),
                lang_links=language.links(request),
                **context,
            )
        )
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if choice.remember:
            remember_language(self.user_store(), session, choice.language)
            response.headers.append(
                "Set-Cookie",
                cookie_header(
                    language.LANGUAGE_COOKIE,
                    choice.language,
                    language.LANGUAGE_COOKIE_AGE_S,
                    request.url.scheme == "https",
                ),
            )
        return response

    def _zone_now(self) -> tzinfo:
        runtime = self._runtime()
        return zone_named(runtime.config.timezone if runtime is not None else None)

    def _when(self, timestamp: float) -> str:
        return when(timestamp, self._zone_now())

    def message(self, request: Request, status: int, title: str, text: str) -> Response:
        """A page with one message; `title` and `text` are English messages (marked `N_` where
        they are written) or a reason from below, shown as it is when no catalogue has it."""
        t = translator(language.choose(request).language)
        return self.page(request, "message.html", status, title=title, text=t.gettext(text))

    def runtime(self) -> Runtime | None:
        return self._runtime()

    def user_store(self) -> UserStore | None:
        policy = self._policy()
        return policy.users if policy is not None else None

    def load(self, path: Path) -> DicomImage:
        runtime = self._runtime()
        limits = runtime.store.limits if runtime is not None else None
        return self.images.get(path, functools.partial(read_instance, limits=limits))

    def zone(self, runtime: Runtime) -> tzinfo:
        """The time zone of the times shown (`--timezone`, default this machine's)."""
        return zone_named(runtime.config.timezone)

    def codes(self, runtime: Runtime) -> tuple[str, ...]:
        screener = runtime.screener
        return screener.package.manifest.finding_codes if screener is not None else ()

    async def audit(self, runtime: Runtime, actor: str, action: str, **detail: object) -> None:
        await _in_thread(functools.partial(runtime.store.audit, actor, action, **detail))

    # -- sign-in ----------------------------------------------------------------------------

    async def login_page(
        self, request: Request, error: str = "", status: int = 200, target: str | None = None
    ) -> Response:
        nonce = secrets.token_urlsafe(16)
        response = self.page(
            request,
            "login.html",
            status,
            title=N_("Sign in"),
            nonce=nonce,
            next=_safe_next(target or request.query_params.get("next")),
            error=translator(language.choose(request).language).gettext(error) if error else "",
        )
        secure = request.url.scheme == "https"
        response.headers.append(
            "Set-Cookie", cookie_header(LOGIN_COOKIE, nonce, LOGIN_TTL_S, secure)
        )
        return response

    async def login(self, request: Request) -> Response:
        policy, runtime = self._policy(), self.runtime()
        if policy is None or runtime is None:
            return self.message(request, 503, N_("Starting"), N_("The service is starting; retry."))
        if policy.sessions is None:
            return self.message(
                request, 500, N_("Not configured"), N_("UI sessions are not set up.")
            )
        form = await _form(request)
        nonce = read_cookie(request.headers.get("cookie"), LOGIN_COOKIE) or ""
        sent = form.get("nonce", "").encode("utf-8")
        if not nonce or not secrets.compare_digest(nonce.encode("utf-8"), sent):
            return await self.login_page(
                request, N_("The sign-in form expired. Please try again."), 400, form.get("next")
            )
        if "username" in form:
            found = await self.passwords.sign_in(request, policy, form)
        else:
            found = await _in_thread(functools.partial(token_sign_in, policy, form))
        if isinstance(found, Refused):
            failed = client_actor(request.scope)
            await self.audit(runtime, failed, "ui_sign_in_failed", **found.detail)
            return await self.login_page(request, found.message, 401, form.get("next"))
        actor, binding = found
        value, _ = policy.sessions.issue(actor, binding)
        await self.audit(runtime, actor, "ui_sign_in")
        target = _safe_next(form.get("next"))
        response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
        secure = request.url.scheme == "https"
        max_age = int(policy.sessions.ttl_s)
        response.headers.append("Set-Cookie", cookie_header(COOKIE, value, max_age, secure))
        response.headers.append("Set-Cookie", cookie_header(LOGIN_COOKIE, "", 0, secure))
        return response

    async def logout(self, request: Request) -> Response:
        runtime = self.runtime()
        form = await _form(request)
        try:
            forms.check_csrf(request.scope.get(SESSION_KEY), form)
        except RequestError as exc:
            return self.message(request, 403, N_("Not signed out"), str(exc))
        policy, session = self._policy(), request.scope.get(SESSION_KEY)
        if policy is not None and policy.sessions is not None and session is not None:
            try:
                await _in_thread(functools.partial(policy.sessions.revoke, session))
            except StoreError as exc:  # still clear this browser's cookie below
                log.error("sign-out not recorded (%s): a copied cookie stays valid", exc)
        if runtime is not None:
            await self.audit(runtime, actor_of(request.scope), "ui_sign_out")
        response = RedirectResponse("/ui/login", status_code=303, headers=SECURITY_HEADERS)
        secure = request.url.scheme == "https"
        response.headers.append("Set-Cookie", cookie_header(COOKIE, "", 0, secure))
        return response

    # -- pages ------------------------------------------------------------------------------

    async def worklist(self, request: Request) -> Response:
        runtime = self.runtime()
        if runtime is None:
            return self.message(request, 503, N_("Starting"), N_("The service is starting; retry."))
        query = dict(request.query_params)
        call = functools.partial(
            worklist_page,
            runtime.store,
            query,
            self.codes(runtime),
            runtime.config.escalate_after_minutes,
            zone=self.zone(runtime),
            viewer_url=runtime.config.viewer_url,
        )
        try:
            page = await _in_thread(call)
        except RequestError as exc:
            return self.message(request, 400, N_("Worklist filter not understood"), str(exc))
        await self.audit(
            runtime, actor_of(request.scope), "ui_worklist_read", count=len(page.entries)
        )
        saved = request.query_params.get("saved") == "read"
        return self.page(request, "worklist.html", page=page, title=N_("Worklist"), saved=saved)

    async def study(self, request: Request, error: str = "", status: int = 200) -> Response:
        runtime = self.runtime()
        if runtime is None:
            return self.message(request, 503, N_("Starting"), N_("The service is starting; retry."))
        uid = str(request.path_params["uid"])
        try:
            index = _index(request.query_params.get("image"))
            call = functools.partial(
                study_page,
                runtime.store,
                uid,
                index,
                self.load,
                runtime.config.escalate_after_minutes,
                zone=self.zone(runtime),
                viewer_url=runtime.config.viewer_url,
                t=translator(language.choose(request).language),
                manifest=runtime.screener.package.manifest if runtime.screener else None,
            )
            page = await _in_thread(call)
            around = await _in_thread(
                functools.partial(
                    neighbours, runtime.store, uid, runtime.config.escalate_after_minutes
                )
            )
        except RequestError as exc:
            return self.message(request, 400, N_("Study not shown"), str(exc))
        if page is None:
            t = translator(language.choose(request).language)
            text = t.gettext("No study %(uid)s was received.") % {"uid": uid}
            return self.message(request, 404, N_("No such study"), text)
        await self.audit(runtime, actor_of(request.scope), "ui_study_opened", study=uid)
        saved = request.query_params.get("saved", "")
        return self.page(
            request,
            "study.html",
            status,
            page=page,
            title=N_("Study"),
            error=error,
            saved=saved if saved in ("feedback", "priority", "read", "moved") else "",
            base=f"/ui/studies/{quote(uid)}",
            around=around,
            presets=PRESETS,
            initial_size=render.INITIAL_SIDE,
            shadow=await _in_thread(functools.partial(shadow_block, runtime, uid))
            if require_admin(request.scope)
            else [],
        )

    # -- images -----------------------------------------------------------------------------

    async def image(self, request: Request) -> Response:
        runtime = self.runtime()
        if runtime is None:
            return Response(status_code=503)
        uid = str(request.path_params["uid"])
        try:
            index = whole_number(str(request.path_params["index"]), "the image number")
            window = DisplayWindow.parse(
                request.query_params.get("wc"), request.query_params.get("ww")
            )
            frame = _index(request.query_params.get("frame")) or 0
            size = render.render_side(request.query_params.get("size"))
            region = request.query_params.get("region")
            call = functools.partial(self._image, runtime, uid, index, frame, window, size, region)
            data = await _in_thread(call)
        except RequestError as exc:
            return _bad_request(exc)
        if data is None:
            return Response("no such image", status_code=404, media_type="text/plain")
        return Response(data, media_type="image/png", headers=SECURITY_HEADERS)

    def _image(
        self,
        runtime: Runtime,
        uid: str,
        index: int,
        frame: int,
        window: DisplayWindow | None,
        size: int | None = None,
        region: str | None = None,
    ) -> bytes | None:
        stored = runtime.store.instances_of(uid)
        if not 0 <= index < len(stored):
            return None
        try:
            image = self.load(stored[index][1])
        except InputError:
            return None
        if not 0 <= frame < image.pixels.shape[0]:
            raise RequestError(f"the image has {image.pixels.shape[0]} frame(s)")
        crop = render.Region.parse(region, image.info.rows, image.info.columns)
        return image_png(image, frame, window, size, crop)

    async def heatmap(self, request: Request) -> Response:
        runtime = self.runtime()
        if runtime is None:
            return Response(status_code=503)
        uid = str(request.path_params["uid"])
        # Each code once: a repeated code adds nothing but another full-size resample.
        codes = list(
            dict.fromkeys(c for c in request.query_params.get("codes", "").split(",") if c)
        )
        try:
            index = whole_number(str(request.path_params["index"]), "the image number")
            version = whole_number(request.query_params.get("version"), "version", default=0)
        except RequestError as exc:
            return _bad_request(exc)
        call = functools.partial(self._heatmap, runtime, uid, index, version, codes)
        data = await _in_thread(call)
        if data is None:
            return Response("no heatmap for this image", status_code=404, media_type="text/plain")
        return Response(data, media_type="image/png", headers=SECURITY_HEADERS)

    def _heatmap(
        self, runtime: Runtime, uid: str, index: int, version: int, codes: list[str]
    ) -> bytes | None:
        stored = runtime.store.instances_of(uid)
        if not 0 <= index < len(stored):
            return None
        sop, path = stored[index]
        found = [m for m in runtime.store.class_maps(uid, version) if m.sop_instance_uid == sop]
        if not found or not codes or any(c not in found[0].codes for c in codes):
            return None
        try:
            info = self.load(path).info
        except InputError:
            return None
        return heatmap_png([found[0].for_code(c) for c in codes], info.rows, info.columns)

    # -- form posts -------------------------------------------------------------------------

    async def _post(
        self,
        request: Request,
        action: Callable[[Runtime, str, Mapping[str, str]], str | None],
        saved: str,
    ) -> Response:
        """Run `action`; a URL it returns is where to go next, else back to the study."""
        runtime = self.runtime()
        if runtime is None:
            return self.message(request, 503, N_("Starting"), N_("The service is starting; retry."))
        uid = str(request.path_params["uid"])
        form = await _form(request)
        try:
            forms.check_csrf(request.scope.get(SESSION_KEY), form)
        except RequestError as exc:
            return self.message(request, 403, N_("Not saved"), str(exc))
        try:
            goto = await _in_thread(functools.partial(action, runtime, uid, form))
        except RequestError as exc:
            return await self.study(request, error=plain(str(exc)) or "", status=400)
        except DiagnosticsError as exc:
            log.error("review UI: %s: %s", type(exc).__name__, exc)
            reason = plain(str(exc))
            t = translator(language.choose(request).language)
            text = t.gettext("Not saved: %(reason)s") % {"reason": reason}
            return await self.study(request, error=text, status=503)
        if goto is not None:
            return RedirectResponse(goto, status_code=303, headers=SECURITY_HEADERS)
        query = {"saved": saved}
        image = form.get("image", "")
        if image.isdigit():
            query["image"] = image
        target = f"/ui/studies/{quote(uid)}?{urlencode(query)}#{saved}"
        return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)

    async def feedback(self, request: Request) -> Response:
        actor = actor_of(request.scope)

        def save(runtime: Runtime, uid: str, form: Mapping[str, str]) -> None:
            record_feedback(runtime.store, forms.feedback_input(uid, form), actor)

        return await self._post(request, save, "feedback")

    async def priority(self, request: Request) -> Response:
        actor = actor_of(request.scope)

        def save(runtime: Runtime, uid: str, form: Mapping[str, str]) -> None:
            set_requested_priority(runtime.store, uid, forms.priority_choice(form), actor)

        return await self._post(request, save, "priority")

    async def read(self, request: Request) -> Response:
        actor = actor_of(request.scope)

        def save(runtime: Runtime, uid: str, form: Mapping[str, str]) -> str | None:
            reading, minutes = form.get("read", "1") == "1", runtime.config.escalate_after_minutes
            return read_and_move_on(runtime.store, uid, actor, reading, minutes)

        return await self._post(request, save, "read")


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form as strings; files are not accepted anywhere in the UI."""
    form = await request.form(max_files=0, max_fields=64)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: only a path inside the UI or the API page, never
    another site."""
    unsafe = ("\\", "//", "\n", "\r")
    inside = target in ("/", "/ui", "/docs") or (target or "").startswith("/ui/")
    if target and inside and not any(u in target for u in unsafe):
        return target
    return "/ui/"


def _index(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    return whole_number(raw, "an image number")


def _bad_request(error: RequestError) -> Response:
    """The image routes' 400: a JSON error like the API's (an <img> never shows it)."""
    return JSONResponse(error_body(error), status_code=400, headers=SECURITY_HEADERS)
