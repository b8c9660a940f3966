"""The admin page `/ui/users`: named users (add, disable, enable, reset password) and the API
tokens of integrations (add, shown once; revoke).

Admins only (`require_admin`), every post CSRF-checked like the review forms, every change
audited by the store in the transaction that makes it (`user_added`, `token_revoked`, ...);
a refused or invalid change is audited as `user_change_refused` (RFC 3881 minor failure).
Passwords and tokens never reach the audit trail, the log or a redirect URL: a new token is
shown in the response to the post that made it, and nowhere else.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from diagnostics.api.auth import SESSION_KEY, actor_of
from diagnostics.errors import RequestError, StoreError
from diagnostics.i18n import N_, translator
from diagnostics.service import users as accounts
from diagnostics.service.runtime import Runtime
from diagnostics.store import UserStore
from diagnostics.store.accounts import ROLES, ApiToken, User
from diagnostics.ui import forms, language
from diagnostics.ui.audit_page import require_admin

ACTIONS = ("add", "disable", "enable", "password", "token_add", "token_revoke")
ROLE_LABELS = {
    "radiologist": N_("Radiologist"),
    "admin": N_("Administrator"),
    "integration": N_("Integration"),
}
DONE = {
    "add": N_("User added."),
    "disable": N_("User disabled: their sessions have ended."),
    "enable": N_("User enabled."),
    "password": N_("Password changed: the user's sessions have ended."),
    "token_revoke": N_("Token revoked: it is refused from its next request on."),
}


class UI(Protocol):
    """What the page needs of `diagnostics.ui.app.ReviewUI`."""

    def page(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response: ...

    def message(self, request: Request, status: int, title: str, text: str) -> Response: ...

    def runtime(self) -> Runtime | None: ...

    def user_store(self) -> UserStore | None: ...

    async def audit(self, runtime: Runtime, actor: str, action: str, **detail: object) -> None: ...


@dataclass(frozen=True)
class UsersPage:
    users: list[User]
    tokens: list[ApiToken]
    now: float
    roles: tuple[str, ...] = ROLES


def users_routes(ui: UI) -> list[Route]:
    """`GET` and `POST /ui/users`, for the review UI's routes."""

    async def show(
        request: Request, error: str = "", status: int = 200, new_token: str = ""
    ) -> Response:
        runtime, store = ui.runtime(), ui.user_store()
        if runtime is None or store is None:
            return ui.message(request, 503, N_("Starting"), N_("The service is starting; retry."))
        if not require_admin(request.scope):
            await ui.audit(runtime, actor_of(request.scope), "users_page_refused")
            return ui.message(
                request, 403, N_("Not allowed"), N_("The users page is for administrators.")
            )
        page = await anyio.to_thread.run_sync(
            lambda: UsersPage(store.users(), store.tokens(), time.time())
        )
        done = request.query_params.get("done", "")
        t = translator(language.choose(request).language)
        return ui.page(
            request,
            "users.html",
            status,
            page=page,
            title=N_("Users"),
            error=error,
            done=DONE.get(done, "") if status == 200 else "",
            new_token=new_token,
            roles={code: t.gettext(label) for code, label in ROLE_LABELS.items()},
        )

    async def change(request: Request) -> Response:
        runtime, store = ui.runtime(), ui.user_store()
        if runtime is None or store is None:
            return ui.message(request, 503, N_("Starting"), N_("The service is starting; retry."))
        actor = actor_of(request.scope)
        form = await request.form(max_files=0, max_fields=16)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        action = fields.get("action", "")
        try:
            if not require_admin(request.scope):
                raise PermissionError
            forms.check_csrf(request.scope.get(SESSION_KEY), fields)
            if action not in ACTIONS:
                raise RequestError(f"action must be one of {', '.join(ACTIONS)}")
            call = functools.partial(_apply, store, action, fields, actor)
            token = await anyio.to_thread.run_sync(call)
        except PermissionError:
            await ui.audit(runtime, actor, "user_change_refused", reason="not_admin")
            return ui.message(
                request, 403, N_("Not allowed"), N_("The users page is for administrators.")
            )
        except (RequestError, StoreError) as exc:
            await ui.audit(runtime, actor, "user_change_refused", reason=action or "none")
            return await show(request, error=str(exc), status=400)
        if token:
            return await show(request, new_token=token)
        return RedirectResponse(f"/ui/users?done={action}", status_code=303)

    return [
        Route("/users", show, methods=["GET"]),
        Route("/users", change, methods=["POST"]),
    ]


def _apply(store: UserStore, action: str, form: Mapping[str, str], actor: str) -> str:
    """Make one change; the new token for `token_add`, else ""."""
    name = forms.text(form, "name", required=True)
    if action == "add":
        role = forms.text(form, "role", required=True)
        accounts.add_user(store, name, role, forms.text(form, "password", required=True), actor)
    elif action in ("disable", "enable"):
        if action == "disable" and actor == accounts.user_actor(name.strip().lower()):
            raise RequestError("you cannot disable yourself")
        accounts.set_disabled(store, name, action == "disable", actor)
    elif action == "password":
        password = forms.text(form, "password", required=True)
        accounts.reset_password(store, name, password, actor)
    elif action == "token_add":
        return accounts.add_token(store, name, actor)[1]
    else:
        accounts.revoke_token(store, name, actor)
    return ""
