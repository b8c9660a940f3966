"""The one strict pydantic base for the project's contracts.

Contracts (StudyResult, the model manifest, settings read from files) are immutable values, and
an unknown field is a mistake to report rather than data to carry silently: a typo in a manifest
or a request must fail loudly, naming the field.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

STRICT = ConfigDict(frozen=True, extra="forbid")
"""The configuration of `StrictModel`, for models that need to extend it."""


class StrictModel(BaseModel):
    """A frozen pydantic model that refuses unknown fields."""

    model_config = STRICT
