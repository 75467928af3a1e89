"""Wire schemas of the operations routes (/ready, /models, /admin/reload): what they answer about
loaded models, failed loads and the registry. Never internal objects."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from service.models.failures import LoadFailure
from service.schemas import LoadedModelInfo


class FailedLoadInfo(BaseModel):
    """A version that could not be loaded or resolved; the reference keeps its previous version."""

    model: str = Field(description="The reference: NAME@ALIAS or NAME/VERSION")
    version: str | None = Field(description="The version that failed; null when the reference did not resolve")
    reason: str
    at: dt.datetime


class ReadyStatus(BaseModel):
    status: Literal["ready", "not ready"]
    model: str = Field(description="The default model: its registered name, or the fixed reference served")
    alias: str | None = Field(description="The alias it follows; null for a fixed reference (FORECASTER_MODEL_URI)")
    version: str | None = Field(
        description="The loaded version of the default model; null while none is, or when it is no registered version"
    )
    registry: Literal["up", "down", "unknown"] = Field(
        description="Whether the latest registry call asked got an answer (refreshed in the background when "
        "no call was made within the registry timeout)"
    )
    last_refresh: dt.datetime | None = Field(description="When every followed alias last resolved")
    failed: FailedLoadInfo | None = Field(description="The default model's last failed version, if still pending")
    detail: str | None = Field(None, description="Why the service is not ready")


class ModelStatus(LoadedModelInfo):
    failed: FailedLoadInfo | None = Field(None, description="A newer version that failed to load, if any")


class ReloadResult(BaseModel):
    detail: str | None = Field(None, description="Set when the answer is not 200: what failed")
    changes: list[str] = Field(description="'NAME@ALIAS: OLD -> NEW' per swap, 'NAME@ALIAS: loaded' on first load")
    failed: list[FailedLoadInfo] = Field(description="References whose new version could not be loaded")
    models: dict[str, str | None] = Field(description="Every loaded reference and its version after the reload")


def failed_info(failure: LoadFailure | None) -> FailedLoadInfo | None:
    if failure is None:
        return None
    return FailedLoadInfo(model=failure.label, version=failure.version, reason=failure.reason, at=failure.at)
