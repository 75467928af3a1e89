"""Step 4: the promotion gate, and the alias moves it allows (plus rollback)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from forecaster import tracking
from forecaster.errors import ModelNotFoundError

log = logging.getLogger(__name__)
CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None
    naive: float


def mean_metric(metrics: dict[str, dict[str, list[float]]], name: str, metric: str, steps: int) -> float:
    return float(np.mean(metrics[name][metric][:steps]))


def decide(
    challenger: dict[str, dict[str, list[float]]],
    champion: dict[str, dict[str, list[float]]] | None,
    metric: str,
    margin: float,
) -> Decision:
    """Promote only if the challenger beats naive and beats the champion by `margin` (relative).

    Both were scored on the same holdout origins; lower is better for every gate metric.
    """
    steps = len(challenger["model"][metric])
    if champion is not None:
        steps = min(steps, len(champion["model"][metric]))
    ours = mean_metric(challenger, "model", metric, steps)
    naive = mean_metric(challenger, "naive", metric, steps)
    theirs = mean_metric(champion, "model", metric, steps) if champion is not None else None
    if not ours < naive:
        return Decision(False, f"{metric} {ours:.4f} does not beat naive {naive:.4f}", metric, ours, theirs, naive)
    if theirs is None:
        return Decision(
            True, f"no champion yet; {metric} {ours:.4f} beats naive {naive:.4f}", metric, ours, None, naive
        )
    needed = theirs * (1.0 - margin)
    if ours < needed:
        return Decision(
            True,
            f"{metric} {ours:.4f} beats champion {theirs:.4f} by more than {margin:.1%} and naive {naive:.4f}",
            metric,
            ours,
            theirs,
            naive,
        )
    return Decision(
        False,
        f"{metric} {ours:.4f} does not beat champion {theirs:.4f} by {margin:.1%} (needs < {needed:.4f})",
        metric,
        ours,
        theirs,
        naive,
    )


def apply(name: str, version: str, decision: Decision, champion_version: str | None) -> None:
    """Move aliases: promoted -> champion (old champion -> previous); else -> challenger."""
    if decision.promote:
        if champion_version is not None:
            tracking.set_alias(name, PREVIOUS, champion_version)
        tracking.set_alias(name, CHAMPION, version)
        log.info("promoted %s version %s to %s (%s)", name, version, CHAMPION, decision.reason)
    else:
        tracking.set_alias(name, CHALLENGER, version)
        log.info("rejected %s version %s: %s", name, version, decision.reason)


def rollback(name: str) -> tuple[str, str]:
    """champion <- previous (and previous <- the old champion, so a rollback can be undone)."""
    previous = tracking.alias_version(name, PREVIOUS)
    if previous is None:
        raise ModelNotFoundError(f"model '{name}': no '{PREVIOUS}' version to roll back to")
    current = tracking.alias_version(name, CHAMPION)
    tracking.set_alias(name, CHAMPION, previous)
    if current is not None:
        tracking.set_alias(name, PREVIOUS, current)
    tracking.set_version_tags(name, previous, {"rolled_back_from": current or ""})
    log.info("rolled back %s: champion %s -> %s", name, current, previous)
    return current or "", previous
