"""POST /admin/reload: re-resolve aliases now (key required; disabled without one)."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import AdminKeyDep, SettingsDep, StoreDep

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminKeyDep])


@router.post("/reload")
async def reload(settings: SettingsDep, store: StoreDep) -> dict[str, object]:
    """Load the default model if missing and swap in every alias that moved."""
    default = store.key(settings.model_name, settings.alias, None)
    if default not in store.models:
        await store.get(settings.model_name, settings.alias)
        changes = [f"{settings.model_name}@{settings.alias}: loaded"]
    else:
        changes = await store.refresh()
    return {
        "changes": changes,
        "models": {
            f"{k[0]}@{k[2]}" if k[1] == "alias" else f"{k[0]}/{k[2]}": m.ref.version for k, m in store.models.items()
        },
    }
