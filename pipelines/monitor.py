"""The scheduler's side of the forecast ledger: after each data refresh (the day's close), the
ledger's due forecasts are scored against the refreshed bars, as `forecaster monitor score` does
(forecaster.monitor.score), when the retrain settings say `monitor_score`.

Scoring never fails a retrain: a ledger that cannot be reached or scored is one warning line, and
the next run scores what is due then (scoring is idempotent and restartable).
"""

from __future__ import annotations

import logging

import pandas as pd

from forecaster.errors import ForecasterError, one_line
from forecaster.monitor.score import ScoreSummary, score
from forecaster.monitor.store import LedgerStore, resolve_uri
from pipelines.settings import RetrainSettings

log = logging.getLogger(__name__)


def score_ledger(settings: RetrainSettings, frame: pd.DataFrame, origin: str) -> ScoreSummary | None:
    """Score the ledger (settings.ledger_uri, default beside the MLflow store) against the
    refreshed bars `frame` from `origin`; None when off or when the ledger could not be scored."""
    if not settings.monitor_score:
        return None
    try:
        store = LedgerStore(resolve_uri(settings.ledger_uri, settings.tracking_uri))
    except (ForecasterError, ValueError) as exc:
        log.warning("ledger not scored: %s", one_line(exc))
        return None
    try:
        summary = score(store, frame, origin)
    except (ForecasterError, ValueError) as exc:  # the ledger's error or a row the bars refuse
        log.warning("ledger %s not scored: %s", store.name, one_line(exc))
        return None
    finally:
        store.close()
    log.info(
        "ledger %s: %d forecast steps scored (bars to %s); %d resolved, %d pending, %d unmatched",
        store.name, summary.scored, summary.last_bar, summary.resolved, summary.pending, summary.unmatched,
    )  # fmt: skip
    return summary
