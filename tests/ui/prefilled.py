"""What the `prefilled` fixture holds: the service and the studies screened into its worklist."""

from __future__ import annotations

from dataclasses import dataclass

from tests.helpers.service import Server

TOKEN = "ui-test-token-0123456789abcdef"


@dataclass
class Prefilled:
    server: Server
    analysed: list[str]
    """Study UIDs screened and analysed, flagged ones first."""
    flagged: list[str]
    """Those with a finding flagged, urgent ones first; the rest of them stayed routine
    (their findings' on_flag is routine)."""
    not_analysed: str
    failed: str
