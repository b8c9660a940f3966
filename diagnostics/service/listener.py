"""The DICOM listener a PACS sends to: C-ECHO and C-STORE SCP (pynetdicom).

Only calling AE titles on the allow-list may associate, and only when they call us by our AE
title (unless `accept_any_called_ae`: some PACS cannot be told it); others are rejected at
association with the standard reason (PS3.8 9.3.4: calling or called AE title not recognised),
logged and audited without anything the peer sent but its calling AE title.
A C-STORE is answered with success only after the intake store has the instance on disk and in
the database, so an acknowledged instance is never lost. A C-STORE request's
Priority HIGH makes the study urgent on the worklist (`diagnostics.store.priority`).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Sequence
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from diagnostics.dicom.header import refusal_category
from diagnostics.errors import DuplicateInstanceError, InputError, StoreError
from diagnostics.service.logs import log_stored
from diagnostics.store import Store
from diagnostics.store.priority import from_dimse
from diagnostics.store.records import Received

log = logging.getLogger(__name__)

SUCCESS = 0x0000
CANNOT_UNDERSTAND = 0xC000
"""Error: the data set is not a usable image (named in the status comment)."""
OUT_OF_RESOURCES = 0xA700
"""Refused: storage failed; the sender should retry later."""
DUPLICATE_SOP_INSTANCE = 0x0111
"""Failure: another copy of this SOP Instance UID (other content, or another study) is stored;
the stored copy is kept (PS3.7 Annex C). An identical resend is answered with success."""


class DicomListener:
    """A pynetdicom association server feeding an `Store`."""

    def __init__(
        self,
        store: Store,
        *,
        ae_title: str,
        port: int,
        allowed_callers: Sequence[str],
        host: str = "0.0.0.0",
        accept_any_called_ae: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        on_received: Callable[[Received, str], None] | None = None,
        refuse_intake: Callable[[int], StoreError | None] | None = None,
    ) -> None:
        """`refuse_intake(size)` says why a new instance of `size` bytes is refused now (the
        free-disk watermark)."""
        self.store = store
        self.refuse_intake = refuse_intake
        self.address = (host, port)
        self.ssl_context = ssl_context
        self.on_received = on_received
        self.allowed = [a.strip() for a in allowed_callers if a.strip()]
        ae = AE(ae_title=ae_title)
        # Verification and every storage SOP class, in every transfer syntax pynetdicom knows:
        # decoding support is checked per instance, with a reason, not at negotiation.
        ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.require_calling_aet = self.allowed
        ae.require_called_aet = not accept_any_called_ae
        ae.maximum_associations = 16
        ae.network_timeout = 60
        self.ae = ae
        self._server: Any = None

    def start(self) -> None:
        handlers: list[Any] = [
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        self._server = self.ae.start_server(
            self.address, block=False, evt_handlers=handlers, ssl_context=self.ssl_context
        )
        checked = "" if self.ae.require_called_aet else " (any called AE title accepted)"
        log.info("DICOM listener on %s:%d as %s%s", *self.address, self.ae.ae_title, checked)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    @property
    def port(self) -> int:
        if self._server is None:
            return self.address[1]
        return int(self._server.server_address[1])

    @staticmethod
    def _caller(event: Any) -> str:
        return str(event.assoc.requestor.ae_title).strip()

    def _on_echo(self, event: Any) -> int:
        return SUCCESS

    def _on_accepted(self, event: Any) -> None:
        caller = self._caller(event)
        address = event.assoc.requestor.address
        log.info(
            "association from %s (%s) accepted",
            caller,
            address,
            extra={"event": "association_accepted", "calling_ae": caller, "peer": address},
        )

    def _on_rejected(self, event: Any) -> None:
        caller = self._caller(event)
        address = event.assoc.requestor.address
        reason = self._rejection(event, caller)
        log.warning(
            "association from %s (%s) rejected: %s",
            caller,
            address,
            reason,
            extra={"event": "association_rejected", "calling_ae": caller, "peer": address},
        )
        self.store.audit(f"dimse:{caller}", "association_rejected", address=address, reason=reason)

    def _rejection(self, event: Any, caller: str) -> str:
        """Why pynetdicom rejected it, in the same order of checks (`acse.py`): the called AE
        title is checked last, so it wins. Never quotes the wrong called AE title."""
        primitive = getattr(event.assoc.requestor, "primitive", None)
        called = str(getattr(primitive, "called_ae_title", "") or "").strip()
        if self.ae.require_called_aet and called != self.ae.ae_title.strip():
            return "called AE title not recognised"
        if caller not in self.allowed:
            return "calling AE title not allowed"
        return "refused (busy or not acceptable)"

    def _on_store(self, event: Any) -> Dataset | int:
        caller = self._caller(event)
        try:
            data = event.encoded_dataset()  # in memory: its size is known before any write
            full = self.refuse_intake(len(data)) if self.refuse_intake is not None else None
            if full is not None:  # before anything is written; the watermark logs the crossing
                return _status(OUT_OF_RESOURCES, str(full))
            priority = from_dimse(getattr(event.request, "Priority", None))
            received = self.store.receive(
                data,
                source=f"dimse:{caller}",
                requested_priority=priority,
                address=event.assoc.requestor.address,
            )
        except InputError as exc:
            # Its class only: the message, sent back to the peer, quotes header values.
            reason = refusal_category(exc)
            log.warning(
                "C-STORE from %s refused (%s)",
                caller,
                reason,
                extra={"event": "instance_refused", "calling_ae": caller, "reason": reason},
            )
            address = event.assoc.requestor.address
            self.store.audit(f"dimse:{caller}", "instance_refused", error=reason, address=address)
            code = DUPLICATE_SOP_INSTANCE if isinstance(exc, DuplicateInstanceError) else None
            return _status(code or CANNOT_UNDERSTAND, str(exc))
        except StoreError as exc:
            log.error("C-STORE from %s could not be stored: %s", caller, exc)
            return _status(OUT_OF_RESOURCES, str(exc))
        log_stored(log, received.sop_instance_uid, received.study_instance_uid, f"dimse:{caller}")
        if self.on_received is not None:
            self.on_received(received, f"dimse:{caller}")
        return SUCCESS


def _status(code: int, comment: str) -> Dataset:
    """A status with the reason in Error Comment (64 characters at most, LO)."""
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]
    return status
