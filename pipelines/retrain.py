"""One retraining run: refresh -> train challenger -> evaluate both on the same holdout ->
gate -> record. A failure at any step promotes nothing and leaves the champion as it was."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from forecaster import evaluate, tracking
from forecaster.errors import ModelNotFoundError
from forecaster.job import code_version, evaluate_frame, tracked_training
from pipelines import promote
from pipelines.lock import database_url, pipeline_lock
from pipelines.refresh import refresh_data
from pipelines.settings import RetrainSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainReport:
    run_id: str
    version: str
    decision: promote.Decision
    champion_before: str | None
    champion_after: str | None


def run_locked(settings: RetrainSettings) -> RetrainReport | None:
    """run_once under the pipeline lock; None when another run holds it and on_busy=skip."""
    uri = tracking.configure(settings.tracking_uri)
    db_url = database_url(settings.lock_database_url, uri)
    with pipeline_lock(settings.model_name, db_url, settings.lock_file, wait=settings.on_busy == "wait") as held:
        if not held:
            log.warning(
                "skipped: another retraining run of '%s' holds the lock (%s)",
                settings.model_name,
                "postgres advisory lock" if db_url else settings.lock_file,
            )
            return None
        return run_once(settings)


def run_once(settings: RetrainSettings) -> RetrainReport:
    name = settings.model_name
    log.info("step 1/5: refresh data (%s)", settings.source)
    frame, origin = refresh_data(settings)

    config = settings.training
    log.info("step 2/5: train the challenger (%s %s)", config.model.arch, config.model.mode)
    champion_before = tracking.alias_version(name, promote.CHAMPION)
    result = tracked_training(
        frame,
        origin,
        config.data,
        config.model,
        config.train,
        register_as=name,
        run_name="retrain",
        extra_tags={"pipeline": "retrain"},
    )
    if result.version is None:
        raise RuntimeError("challenger was not registered")
    holdout = result.outcome.windows.split.test_start

    log.info("step 3/5: evaluate challenger and champion on the holdout from %s", f"{holdout:%Y-%m-%d}")
    challenger_metrics = holdout_metrics(result.outcome.forecaster, frame, holdout)
    champion_metrics = None
    if champion_before is not None:
        try:
            champion, _ = tracking.load_forecaster(f"models:/{name}@{promote.CHAMPION}", device=config.train.device)
        except ModelNotFoundError:
            champion = None
        if champion is not None:
            champion_metrics = holdout_metrics(champion, frame, holdout)

    log.info("step 4/5: gate on %s (margin %.1f%%)", settings.metric, settings.margin * 100)
    decision = promote.decide(challenger_metrics, champion_metrics, settings.metric, settings.margin)

    log.info("step 5/5: record the decision")
    record = decision_record(decision, frame, result.dataset_digest, holdout, champion_before)
    tracking.tag_run(result.run_id, record)
    tracking.log_run_metrics(
        result.run_id,
        {
            f"gate_challenger_{settings.metric}": decision.challenger,
            f"gate_naive_{settings.metric}": decision.naive,
            **({f"gate_champion_{settings.metric}": decision.champion} if decision.champion is not None else {}),
        },
    )
    tracking.set_version_tags(name, result.version, record)
    promote.apply(name, result.version, decision, champion_before)
    champion_after = tracking.alias_version(name, promote.CHAMPION)
    log.info(
        "%s: version %s %s: %s", name, result.version, "PROMOTED" if decision.promote else "rejected", decision.reason
    )
    return RetrainReport(result.run_id, result.version, decision, champion_before, champion_after)


def holdout_metrics(forecaster: Any, frame: Any, holdout: Any) -> dict[str, dict[str, list[float]]]:
    backtest = evaluate_frame(forecaster, frame, forecaster.lookback, forecaster.horizon, from_date=holdout)
    return evaluate.score(backtest)


def decision_record(
    decision: promote.Decision, frame: Any, digest: str, holdout: Any, champion_before: str | None
) -> dict[str, str]:
    return {
        "gate_promoted": str(decision.promote).lower(),
        "gate_reason": decision.reason,
        "gate_metric": decision.metric,
        "gate_challenger": f"{decision.challenger:.6g}",
        "gate_champion": "" if decision.champion is None else f"{decision.champion:.6g}",
        "gate_naive": f"{decision.naive:.6g}",
        "gate_champion_version": champion_before or "",
        "holdout_start": f"{holdout:%Y-%m-%d}",
        "data_range": f"{frame['date'].min():%Y-%m-%d}..{frame['date'].max():%Y-%m-%d}",
        "data_digest": digest,
        "code_version": code_version(),
    }
