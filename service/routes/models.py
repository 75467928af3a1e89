"""GET /models: what is loaded."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import StoreDep
from service.schemas import LoadedModelInfo

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=list[LoadedModelInfo])
async def list_models(store: StoreDep) -> list[LoadedModelInfo]:
    out = []
    for (name, kind, value), loaded in store.models.items():
        config = loaded.forecaster.bundle.model_config
        out.append(
            LoadedModelInfo(
                name=name,
                version=loaded.ref.version,
                alias=value if kind == "alias" else None,
                run_id=loaded.ref.run_id,
                lookback=loaded.forecaster.lookback,
                horizon=loaded.forecaster.horizon,
                arch=config.arch,
                mode=config.mode,
                quantiles=list(config.quantiles),
                device=str(loaded.forecaster.device),
                loaded_at=loaded.loaded_at,
            )
        )
    return out
