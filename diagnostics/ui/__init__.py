"""The radiologists' review UI: sign-in, worklist, study page with overlays, feedback.

Served by the service under `/ui` (`create_ui` returns the mount); see `diagnostics.ui.app`.
"""

from diagnostics.ui.app import create_ui

__all__ = ["create_ui"]
