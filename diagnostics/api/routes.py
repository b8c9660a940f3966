"""The route template a request matches (`/v1/studies/{study_uid}`), never its raw path.

Metrics labels, access-log lines and refusal records name a request by its template: a raw path
is chosen by the client, so as a label it grows without bound (one series per probed path) and
it carries Study Instance UIDs. The template is found the way Starlette routes, by asking each
route of the application (`scope["app"]`, set before any middleware runs) whether it matches,
so it is known before routing, even for a request that authentication then refuses.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from starlette.routing import BaseRoute, Match, Mount

UNMATCHED = "unmatched"
"""How a request that no route serves is named in refusal records."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


ROUTE_KEY = "diagnostics.route"
"""Where the scope keeps its template once found, for the middleware further in."""


def route_template(scope: MutableMapping[str, Any]) -> str | None:
    """The template of the route that serves this request; None when none does (a 404)."""
    if ROUTE_KEY in scope:
        return scope[ROUTE_KEY]  # type: ignore[no-any-return]
    routes = getattr(scope.get("app"), "routes", None)
    found = None
    if routes and scope.get("type") in ("http", "websocket"):
        found = _match(routes, dict(scope), "")
    scope[ROUTE_KEY] = found
    return found


def route_name(scope: MutableMapping[str, Any]) -> str:
    """The template, or `unmatched`: what a log line names a request by."""
    return route_template(scope) or UNMATCHED


def method_label(scope: Mapping[str, Any]) -> str:
    """The request method, or `other`: the client chooses it, so it is a label only if known."""
    method = str(scope.get("method", "WEBSOCKET"))
    return method if method in METHODS or method == "WEBSOCKET" else "other"


def _match(routes: Sequence[BaseRoute], scope: dict[str, Any], prefix: str) -> str | None:
    """Starlette's order: the first full match, else the first partial one (a 405)."""
    partial: tuple[BaseRoute, dict[str, Any]] | None = None
    for route in routes:
        try:
            match, child = route.matches(scope)
        except (KeyError, TypeError, ValueError):  # a route that cannot read this scope
            continue
        if match is Match.FULL:
            return _template(route, {**scope, **child}, prefix)
        if match is Match.PARTIAL and partial is None:
            partial = (route, {**scope, **child})
    return _template(partial[0], partial[1], prefix) if partial is not None else None


def _template(route: BaseRoute, scope: dict[str, Any], prefix: str) -> str | None:
    path = prefix + str(getattr(route, "path", ""))
    if isinstance(route, Mount):
        inner = route.routes
        if inner:
            return _match(inner, scope, path)
        return path + "/{path}"  # an app without routes (static files) serves the whole rest
    return path or "/"
