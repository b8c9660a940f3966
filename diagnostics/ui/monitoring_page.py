"""The admin page `/ui/monitoring`: per day what the model said, and drift against the model
package's reference (`diagnostics.service.monitoring` computes it, cached for minutes, the
same numbers as `/metrics` and `diagnostics monitor`). Counts, rates and finding codes only.

Who may open it is `require_admin`'s decision (the audit page's).
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from diagnostics.i18n import N_
from diagnostics.service.monitoring import (
    DRIFT_STATES,
    VERDICTS,
    Drift,
    Report,
    service_report,
)
from diagnostics.ui.audit_page import UI, require_admin

CHART_WIDTH = 240
CHART_HEIGHT = 48


@dataclass(frozen=True)
class Bar:
    """One rectangle of a chart, in SVG user units (attributes, not styles: the page's CSP)."""

    x: float
    y: float
    width: float
    height: float
    kind: str
    """`reference` or `recent`."""


def bars(drift: Drift) -> list[Bar]:
    """Side-by-side bars per bin: the reference's share and the window's, scaled to the
    largest share (empty when there is nothing to draw)."""
    shares: list[tuple[str, list[float]]] = []
    for kind, counts in (("reference", drift.reference), ("recent", drift.recent)):
        total = sum(counts) if counts else 0
        if counts and total:
            shares.append((kind, [c / total for c in counts]))
    if not shares:
        return []
    top = max(max(values) for _, values in shares) or 1.0
    slot = CHART_WIDTH / len(shares[0][1])
    out = []
    for offset, (kind, values) in enumerate(shares):
        for i, share in enumerate(values):
            height = CHART_HEIGHT * share / top
            x = i * slot + 1 + offset * (slot - 2) / 2
            out.append(Bar(x, CHART_HEIGHT - height, (slot - 2) / 2, height, kind))
    return out


def monitoring_route(ui: UI) -> Route:
    """`GET /ui/monitoring`, for the review UI's routes."""

    async def monitoring(request: Request) -> Response:
        runtime = ui.runtime()
        if runtime is None or runtime.screener is None:
            return ui.message(request, 503, N_("Starting"), N_("The service is starting; retry."))
        if not require_admin(request.scope):
            return ui.message(
                request, 403, N_("Not allowed"), N_("Monitoring is for administrators.")
            )
        report: Report | None = await anyio.to_thread.run_sync(service_report, runtime)
        if report is None:
            return ui.message(request, 503, N_("Starting"), N_("The service is starting; retry."))
        return ui.page(
            request,
            "monitoring.html",
            report=report,
            charts={d.name: bars(d) for d in report.drift},
            states=DRIFT_STATES,
            verdicts_order=VERDICTS,
            chart_width=CHART_WIDTH,
            chart_height=CHART_HEIGHT,
            title=N_("Monitoring"),
        )

    return Route("/monitoring", monitoring, methods=["GET"])
