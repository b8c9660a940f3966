"""A FHIR server for tests, on loopback: it validates every posted resource with
`fhir.resources` (R4B), stores it, and implements what the sender relies on: transactions,
conditional create (`ifNoneExist`), conditional update (`PUT Type?identifier=`), `urn:uuid`
references resolved to the stored ids, bearer or basic authentication, and an outage switch."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

BASE = "/fhir"


class TransactionError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class FhirServer:
    """Resources by type and id; `posts` counts every transaction that reached the handler."""

    def __init__(self, authorization: str | None = None) -> None:
        self.authorization = authorization
        self.outage = False
        self.resources: dict[str, dict[str, dict[str, Any]]] = {}
        self.transactions: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.posts = 0
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}{BASE}"

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.resources.get(kind, {}).values())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    # -- the transaction ------------------------------------------------------------------

    def transact(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """All or nothing, as FHIR transactions are: resolve, then store."""
        try:
            Bundle.model_validate(bundle)
            for entry in bundle.get("entry", []):
                resource = entry["resource"]
                get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            raise TransactionError(400, f"invalid: {exc}") from exc
        if bundle.get("type") != "transaction":
            raise TransactionError(400, "only transactions are accepted")
        with self._lock:
            plan = [self._resolve(entry) for entry in bundle["entry"]]
            locations = {
                e["fullUrl"]: f"{kind}/{rid}"
                for e, (kind, rid, _) in zip(bundle["entry"], plan, strict=True)
            }
            responses = []
            for entry, (kind, rid, write) in zip(bundle["entry"], plan, strict=True):
                if write:
                    resource = _resolved(entry["resource"], locations)
                    resource["id"] = rid
                    created = rid not in self.resources.setdefault(kind, {})
                    self.resources[kind][rid] = resource
                    status = "201 Created" if created else "200 OK"
                else:
                    status = "200 OK"
                responses.append({"response": {"status": status, "location": f"{kind}/{rid}"}})
            self.transactions.append(bundle)
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": responses}

    def _resolve(self, entry: dict[str, Any]) -> tuple[str, str, bool]:
        """(type, id, whether to write) for one entry."""
        request = entry["request"]
        kind = entry["resource"]["resourceType"]
        if request["method"] == "POST":
            condition = request.get("ifNoneExist")
            matches = self._search(kind, condition) if condition else []
            if len(matches) > 1:
                raise TransactionError(412, f"{condition} matches {len(matches)} resources")
            return (kind, matches[0], False) if matches else (kind, uuid.uuid4().hex, True)
        if request["method"] == "PUT":
            path, _, query = request["url"].partition("?")
            if path != kind or not query:
                raise TransactionError(400, f"only conditional updates: {request['url']}")
            matches = self._search(kind, query)
            if len(matches) > 1:
                raise TransactionError(412, f"{query} matches {len(matches)} resources")
            return kind, matches[0] if matches else uuid.uuid4().hex, True
        raise TransactionError(400, f"method {request['method']} not supported")

    def _search(self, kind: str, query: str) -> list[str]:
        params = parse_qs(query)
        if set(params) != {"identifier"}:
            raise TransactionError(400, f"only identifier searches: {query}")
        system, _, value = params["identifier"][0].partition("|")
        return [
            rid
            for rid, resource in self.resources.get(kind, {}).items()
            if any(
                i.get("system") == system and i.get("value") == value
                for i in resource.get("identifier", [])
            )
        ]

    # -- HTTP -----------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server._lock:
                    server.posts += 1
                if server.outage:
                    return self._answer(503, _outcome("down for maintenance"))
                if (
                    server.authorization
                    and self.headers.get("Authorization") != server.authorization
                ):
                    return self._answer(401, _outcome("authentication required"))
                if urlsplit(self.path).path != BASE:
                    return self._answer(404, _outcome(f"no endpoint {self.path}"))
                if not self.headers.get("Content-Type", "").startswith("application/fhir+json"):
                    return self._answer(415, _outcome("send application/fhir+json"))
                try:
                    answer = server.transact(json.loads(body))
                except TransactionError as exc:
                    server.refused.append(str(exc))
                    return self._answer(exc.status, _outcome(str(exc)))
                except ValueError as exc:
                    server.refused.append(str(exc))
                    return self._answer(400, _outcome(f"not JSON: {exc}"))
                self._answer(200, answer)

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _resolved(value: Any, locations: dict[str, str]) -> Any:
    """A copy with `urn:uuid` references replaced by the stored resources' `Type/id`."""
    if isinstance(value, dict):
        out = {k: _resolved(v, locations) for k, v in value.items()}
        reference = out.get("reference")
        if isinstance(reference, str) and reference.startswith("urn:uuid:"):
            if reference not in locations:
                raise TransactionError(400, f"reference {reference} names no entry")
            out["reference"] = locations[reference]
        return out
    if isinstance(value, list):
        return [_resolved(v, locations) for v in value]
    return value


def _outcome(text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": text[:500]}],
    }


@contextmanager
def running(authorization: str | None = None) -> Iterator[FhirServer]:
    server = FhirServer(authorization)
    server.start()
    try:
        yield server
    finally:
        server.stop()
