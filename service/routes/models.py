"""GET /models: what is loaded, and per reference the newer version that failed to load."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import StatusKeyDep, StoreDep
from service.ops_schemas import ModelStatus, failed_info

router = APIRouter(prefix="/models", tags=["models"], dependencies=[StatusKeyDep])  # key: protect_status_routes


@router.get("", response_model=list[ModelStatus])
async def list_models(store: StoreDep) -> list[ModelStatus]:
    out = []
    for key, loaded in store.models.items():
        name, kind, value = key
        config = loaded.forecaster.bundle.model_config
        out.append(
            ModelStatus(
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
                failed=failed_info(store.failed.get(key)),
            )
        )
    return out
