"""One retraining run: refresh -> train challenger -> evaluate both on the same holdout ->
gate -> record. A failure at any step promotes nothing and leaves the champion as it was."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from forecaster.config import DataConfig
from forecaster.data.validate import split_by_date
from forecaster.data.windows import Panel
from forecaster.errors import DataError, ForecasterError, ModelNotFoundError, one_line
from forecaster.evaluation import backtest as evaluate
from forecaster.registry import tracking
from forecaster.run.steps import TrainOutcome, evaluate_frame, predict_fn
from forecaster.run.tracked import code_version, tracked_training
from pipelines import promote
from pipelines.lock import LockTarget, lock_target, pipeline_lock
from pipelines.monitor import score_ledger
from pipelines.refresh import refresh_data
from pipelines.settings import RetrainSettings

log = logging.getLogger(__name__)


def pipeline_tags(name: str) -> dict[str, str]:
    """Tags of every MLflow run the pipeline starts for model `name`: how a later run finds the
    runs this model's pipeline left RUNNING (killed, or cut off from the tracking store)."""
    return {"pipeline": "retrain", "pipeline_model": name}


@dataclass(frozen=True)
class RetrainReport:
    run_id: str
    version: str
    decision: promote.Decision
    champion_before: str | None
    champion_after: str | None
    baseline_version: str | None = None  # the EWMA baseline registered as the first champion, if it was


def store_lock(settings: RetrainSettings) -> LockTarget:
    """The lock of this model on the configured tracking store (pointing MLflow at the store)."""
    uri = tracking.configure(settings.tracking_uri)
    return lock_target(settings.model_name, uri, settings.lock_database_url, settings.lock_file, settings.lock_dir)


def run_locked(settings: RetrainSettings) -> RetrainReport | None:
    """run_once under the pipeline lock; None when another run holds it and on_busy=skip."""
    target = store_lock(settings)
    with pipeline_lock(settings.model_name, target, None if settings.on_busy == "wait" else 0) as held:
        if not held:
            log.warning(
                "skipped: another retraining run of '%s' holds the lock (%s)", settings.model_name, target.describe()
            )
            return None
        fail_stale_runs(settings.model_name)
        return run_once(settings)


def fail_stale_runs(name: str) -> list[str]:
    """Runs of this model's pipeline still RUNNING -> FAILED. Called holding the lock: no live
    process can own them, so each was killed or lost its tracking store before it could end."""
    reason = (
        "the retraining run that started this run ended without closing it (killed, or cut off from the "
        f"tracking store); marked FAILED by the next run at {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
    )
    stale = tracking.fail_running_runs(pipeline_tags(name), reason)
    for run_id in stale:
        log.warning("run %s of '%s' was left RUNNING by a run that died; marked FAILED", run_id, name)
    return stale


def rollback_locked(settings: RetrainSettings) -> tuple[str, str]:
    """promote.rollback under the pipeline lock, waiting at most rollback_wait_s for a running retrain."""
    target = store_lock(settings)
    # checked before the lock too: a model with nothing to roll back to (a typo in its name) gets
    # its error without a lock file created for it; rollback checks again under the lock
    promote.rollback_version(settings.model_name)
    with pipeline_lock(settings.model_name, target, settings.rollback_wait_s) as held:
        if not held:
            raise ForecasterError(
                f"rollback: a retraining run of '{settings.model_name}' held the lock ({target.describe()}) for "
                f"{settings.rollback_wait_s:g}s; nothing was changed, try again when it ends"
            )
        return promote.rollback(settings.model_name)


def run_once(settings: RetrainSettings) -> RetrainReport:
    name = settings.model_name
    log.info("step 1/5: refresh data (%s)", settings.source)
    frame, origin = refresh_data(settings)
    score_ledger(settings, frame, origin)  # the served forecasts now due, against the fresh bars

    config = settings.training
    check_holdout(frame, config.data)
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
        extra_tags=pipeline_tags(name),
    )
    # the training run has ended FINISHED: a later step that fails marks it (and its version) failed
    step = "register"
    try:
        if result.version is None:
            raise RuntimeError("challenger was not registered")
        holdout = result.outcome.windows.split.test_start

        step = "evaluate"
        log.info("step 3/5: evaluate challenger and champion on the holdout from %s", f"{holdout:%Y-%m-%d}")
        challenger_backtest = holdout_backtest(result.outcome.forecaster, result.outcome, frame)
        challenger_metrics = evaluate.score(challenger_backtest)
        champion_metrics = None
        if champion_before is not None:
            try:
                champion, _ = tracking.load_forecaster(f"models:/{name}@{promote.CHAMPION}", device=config.train.device)
            except ModelNotFoundError:
                champion = None
            if champion is not None:
                champion_metrics = evaluate.score(holdout_backtest(champion, result.outcome, frame))

        step = "gate"
        rules = promote.GateRules.from_settings(settings)
        log.info(
            "step 4/5: gate on %s (margin %.1f%%), coverage within %.3f, spl vs ewma %s",
            rules.metric,
            rules.margin * 100,
            rules.coverage_tolerance,
            "required" if rules.require_spl_vs_ewma else "not required",
        )
        decision = promote.decide(challenger_metrics, champion_metrics, rules)
        if champion_before is None:
            decision = promote.first_champion(decision, evaluate.significance(challenger_backtest))

        step = "record"
        log.info("step 5/5: record the decision")
        record = decision_record(decision, frame, result.dataset_digest, holdout, champion_before)
        tracking.tag_run(result.run_id, record)
        tracking.log_run_metrics(result.run_id, decision.metrics())
        tracking.set_version_tags(name, result.version, verdict_only(record))
        step = "promote"
        promote.apply(name, result.version, decision)
        champion_after = tracking.alias_version(name, promote.CHAMPION)
    except Exception as exc:
        mark_failed(
            name,
            result.run_id,
            result.version,
            f"{step} step failed: {one_line(exc)}",
            decided=step == "promote",
        )
        raise
    log.info(
        "%s: version %s %s: %s", name, result.version, "PROMOTED" if decision.promote else "rejected", decision.reason
    )
    baseline = None
    if champion_after is None:  # a first run whose challenger could not serve: the baseline does
        baseline = champion_after = serve_baseline(settings, frame, origin, decision)
    return RetrainReport(result.run_id, result.version, decision, champion_before, champion_after, baseline)


def serve_baseline(settings: RetrainSettings, frame: pd.DataFrame, origin: str, rejected: promote.Decision) -> str:
    """Register the EWMA baseline (the untrained network: train.epochs 0, the random walk with EWMA
    quantiles) and make it champion, so the service has a model from the first run on; every later
    challenger must beat it through the usual gate. Returns its version."""
    name, config = settings.model_name, settings.training
    log.warning("%s has no champion and the challenger cannot be one: registering the EWMA baseline", name)
    result = tracked_training(
        frame,
        origin,
        config.data,
        config.model,
        config.train.model_copy(update={"epochs": 0}),
        register_as=name,
        run_name="retrain-ewma-baseline",
        extra_tags={**pipeline_tags(name), "baseline": "ewma"},
    )
    if result.version is None:
        raise ForecasterError(f"{name}: the EWMA baseline was not registered")
    reason = (
        f"no champion yet and the challenger was rejected ({rejected.reason}): the EWMA-volatility random walk "
        "serves until a challenger beats it"
    )
    tags = {**promote.verdict_tags(True, reason, ""), "gate_first_champion": promote.FIRST_BASELINE}
    try:
        tracking.tag_run(result.run_id, tags)
        tracking.set_version_tags(name, result.version, tags)
        tracking.make_champion(name, result.version)
    except Exception as exc:
        mark_failed(name, result.run_id, result.version, f"baseline step failed: {one_line(exc)}", decided=False)
        raise
    log.info("%s: the EWMA baseline, version %s, is champion", name, result.version)
    return result.version


def check_holdout(frame: pd.DataFrame, data: DataConfig) -> None:
    """Refuse before training when the holdout step 3 evaluates on (the test split of this frame)
    holds no forecast origin for these settings: the run could gate nothing, so nothing is trained
    or registered. Counted as the evaluation counts them (evaluate.rolling_origins)."""
    split = split_by_date(frame, data.val_fraction, data.test_fraction)
    try:
        if len(evaluate.rolling_origins(Panel.from_frame(frame), data.lookback, data.horizon, split.test_start)):
            return
    except DataError:
        pass  # none from that date on: answered below in the settings' names
    longest = int(frame[frame["date"] >= split.test_start].groupby("ticker").size().max())
    raise ForecasterError(
        f"holdout: the test split from {split.test_start:%Y-%m-%d} (training.data.test_fraction="
        f"{data.test_fraction:g}) holds no forecast origin: it has at most {longest} bars per ticker, and an "
        f"origin needs {data.lookback} bars of history (training.data.lookback) and {data.horizon} after it "
        "(training.data.horizon); lower the horizon or raise test_fraction. Nothing was trained or registered"
    )


def mark_failed(name: str, run_id: str, version: str | None, reason: str, decided: bool) -> None:
    """The challenger's run -> FAILED with the reason, and its version tagged with it; with the
    verdict too (not promoted) unless the gate had decided and recorded one. Best effort: the
    failure being raised matters more than its record."""
    log.warning("marking run %s of '%s' FAILED: %s", run_id, name, reason)
    tags = {tracking.FAILURE_TAG: reason, **({} if decided else promote.failure_tags(reason))}
    try:
        tracking.tag_run(run_id, tags)
        tracking.fail_run(run_id, reason)
        if version is not None:
            tracking.set_version_tags(name, version, tags)
    except ForecasterError as exc:
        log.warning("could not record the failure on run %s: %s", run_id, exc)


def holdout_backtest(forecaster: Any, outcome: TrainOutcome, frame: pd.DataFrame) -> evaluate.Backtest:
    """A model's rolling-origin backtest on the holdout: the training run's test origins (every
    window whose targets lie in the test split). The challenger's is the one its run already made,
    beside the baselines; another model (the champion) is scored on the same origins without fitting
    the baselines again, when its windows fit in the run's (lookback no longer, same horizon), else
    on the frame's origins from the holdout's first date."""
    windows, backtest = outcome.windows, outcome.backtest
    if backtest is not None and forecaster is outcome.forecaster:
        return backtest
    fits = forecaster.lookback <= outcome.forecaster.lookback and forecaster.horizon == outcome.forecaster.horizon
    if backtest is not None and fits:
        quantiles, levels = evaluate.model_quantiles(
            predict_fn(forecaster), windows.panel, windows.test_origins, forecaster.lookback, forecaster.horizon
        )
        return evaluate.model_only(backtest, quantiles, levels)
    holdout = windows.split.test_start
    return evaluate_frame(forecaster, frame, forecaster.lookback, forecaster.horizon, from_date=holdout)


def verdict_only(record: dict[str, str]) -> dict[str, str]:
    """Of the decision record, what the registered version carries: the verdict (promoted, why, the
    rule; how a first champion was chosen). The figures and the data range stay on the run, so the
    registry's list of versions stays readable."""
    verdict = {*promote.verdict_tags(False, "", ""), "gate_first_champion"}
    return {key: value for key, value in record.items() if key in verdict}


def decision_record(
    decision: promote.Decision, frame: Any, digest: str, holdout: Any, champion_before: str | None
) -> dict[str, str]:
    """The gate's figures and verdict with the data and code they were reached on."""
    return {
        **decision.tags(),
        "gate_champion_version": champion_before or "",
        "holdout_start": f"{holdout:%Y-%m-%d}",
        "data_range": f"{frame['date'].min():%Y-%m-%d}..{frame['date'].max():%Y-%m-%d}",
        "data_digest": digest,
        "code_version": code_version(),
    }
