"""Step 4: the promotion gate, and the alias moves it allows (plus rollback).

The gate reads the metric dicts of `forecaster.evaluation.backtest.score` (one evaluation, written once):
``{forecast name: {metric: [value per step]}}`` for the challenger's holdout (its own forecasts
beside naive and ewma) and the champion's forecasts on the same holdout.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from forecaster.errors import ModelNotFoundError
from forecaster.registry import tracking

if TYPE_CHECKING:
    from pipelines.settings import RetrainSettings

log = logging.getLogger(__name__)
CHAMPION, PREVIOUS, CHALLENGER = tracking.CHAMPION, tracking.PREVIOUS, tracking.CHALLENGER  # the registry's names
# the rule that rejected a challenger, as recorded in the gate_rule tag
RULE_NAIVE, RULE_COVERAGE, RULE_SPL, RULE_CHAMPION = "naive", "coverage", "spl_vs_ewma", "champion"
RULE_FAILED = "run_failed"  # no gate was reached: a step of the run failed
RULE_NONFINITE = "non_finite"  # the challenger's holdout figures hold NaN or inf: its forecasts are not numbers
# How a registry without a champion gets one (gate_first_champion tag): the challenger when it is not
# significantly worse than naive and ewma at any step, else the EWMA baseline model.
FIRST_BY_DM, FIRST_BASELINE = "not_worse_by_dm", "ewma_baseline"
# the Diebold-Mariano comparisons that rule reads; the others the backtest reports (garch, rgarch, har)
# are figures, not bars: the EWMA baseline served instead would not beat them either
FIRST_CHAMPION_TESTS = ("model_vs_naive", "model_vs_ewma")
# forecaster.evaluation.scoring names each central band's empirical coverage coverage_{nominal %:g}
BAND_KEY = re.compile(r"coverage_(\d+(?:\.\d+)?)")
# coverage is a share of origins; without this slack 0.77 vs 0.80 would miss a 0.03 tolerance by 3e-17
BOUNDARY_SLACK = 1e-9

Metrics = dict[str, dict[str, list[float]]]


@dataclass(frozen=True)
class GateRules:
    """What a challenger must show on the holdout; defaults live in `RetrainSettings`."""

    metric: str
    margin: float
    coverage_tolerance: float
    require_spl_vs_ewma: bool

    @classmethod
    def from_settings(cls, settings: RetrainSettings) -> GateRules:
        return cls(settings.metric, settings.margin, settings.coverage_tolerance, settings.require_spl_vs_ewma)


@dataclass(frozen=True)
class Decision:
    """The gate's verdict and every figure it looked at (recorded on the run and the version)."""

    promote: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None
    naive: float
    rule: str = ""  # the rule that rejected (RULE_*); empty when promoted
    coverage: dict[str, float] = field(default_factory=dict)  # nominal % of each central band -> coverage
    spl: float | None = None
    ewma_spl: float | None = None
    coverage_tolerance: float | None = None
    first: str = ""  # how a registry without a champion got this one (FIRST_*); empty otherwise

    def tags(self) -> dict[str, str]:
        """The decision as tags for the run and the model version."""
        return {
            **verdict_tags(self.promote, self.reason, self.rule),
            **({"gate_first_champion": self.first} if self.first else {}),
            "gate_metric": self.metric,
            "gate_challenger": f"{self.challenger:.6g}",
            "gate_champion": _text(self.champion),
            "gate_naive": f"{self.naive:.6g}",
            "gate_spl": _text(self.spl),
            "gate_ewma_spl": _text(self.ewma_spl),
            "gate_coverage": ",".join(f"{band}={value:.4f}" for band, value in self.coverage.items()),
            "gate_coverage_tolerance": _text(self.coverage_tolerance),
        }

    def metrics(self) -> dict[str, float]:
        """The compared figures as run metrics (None figures left out)."""
        figures = {
            f"gate_challenger_{self.metric}": self.challenger,
            f"gate_naive_{self.metric}": self.naive,
            f"gate_champion_{self.metric}": self.champion,
            "gate_challenger_spl": self.spl,
            "gate_ewma_spl": self.ewma_spl,
            **{f"gate_coverage_{band}": value for band, value in self.coverage.items()},
        }
        return {key: value for key, value in figures.items() if value is not None}


def verdict_tags(promoted: bool, reason: str, rule: str) -> dict[str, str]:
    """Promoted or not, why, and the rule that rejected: the tags every verdict is recorded by."""
    return {"gate_promoted": str(promoted).lower(), "gate_reason": reason, "gate_rule": rule}


def failure_tags(reason: str) -> dict[str, str]:
    """The verdict recorded on a run and its version when a step failed before the gate decided."""
    return verdict_tags(False, reason, RULE_FAILED)


def _text(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def mean_metric(metrics: Metrics, name: str, metric: str, steps: int | None = None) -> float:
    return float(np.mean(metrics[name][metric][:steps]))


def band_coverage(model: dict[str, list[float]]) -> dict[str, float]:
    """Nominal % ('80') -> the holdout coverage of that central band, mean over the horizon."""
    bands = {
        found.group(1): float(np.mean(values)) for key, values in model.items() if (found := BAND_KEY.fullmatch(key))
    }
    return dict(sorted(bands.items(), key=lambda item: float(item[0])))


def decide(challenger: Metrics, champion: Metrics | None, rules: GateRules) -> Decision:
    """Promote only if, on the same holdout, the challenger (in this order):

    0. forecasts numbers: every figure of its holdout metrics is finite (a NaN model never serves);
    1. beats naive on ``rules.metric`` (mean over the steps both models forecast);
    2. serves calibrated bands: every central band's coverage within ``coverage_tolerance`` of nominal;
    3. has a scaled pinball loss (SPL) not worse than ewma's (when ``require_spl_vs_ewma``);
    4. beats the champion, if there is one, on ``rules.metric`` by ``margin`` (relative).

    Rules 2 and 3 judge the challenger's whole horizon: every step it serves. Lower is better for
    every gate metric. The first rule that fails rejects, and the decision names it.
    """
    metric, margin = rules.metric, rules.margin
    steps = len(challenger["model"][metric])
    if champion is not None:
        steps = min(steps, len(champion["model"][metric]))
    ours = mean_metric(challenger, "model", metric, steps)
    naive = mean_metric(challenger, "naive", metric, steps)
    theirs = mean_metric(champion, "model", metric, steps) if champion is not None else None
    coverage = band_coverage(challenger["model"])
    spl = mean_metric(challenger, "model", "spl") if "spl" in challenger["model"] else None
    ewma_spl = mean_metric(challenger, "ewma", "spl") if "spl" in challenger.get("ewma", {}) else None
    figures = Decision(False, "", metric, ours, theirs, naive, "", coverage, spl, ewma_spl, rules.coverage_tolerance)

    def verdict(promote: bool, reason: str, rule: str = "") -> Decision:
        return replace(figures, promote=promote, reason=reason, rule=rule)

    broken = sorted(
        f"{name}.{key}"
        for name, block in challenger.items()
        if name.startswith("model")
        for key, values in block.items()
        if not np.all(np.isfinite(values))
    )
    if broken:
        shown = ", ".join(broken[:4]) + (f" and {len(broken) - 4} more" if len(broken) > 4 else "")
        return verdict(False, f"the challenger's holdout figures are not finite ({shown})", RULE_NONFINITE)
    if not ours < naive:
        return verdict(False, f"{metric} {ours:.4f} does not beat naive {naive:.4f}", RULE_NAIVE)
    off = {
        band: value
        for band, value in coverage.items()
        if abs(value - float(band) / 100.0) > rules.coverage_tolerance + BOUNDARY_SLACK
    }
    if off:
        bands = ", ".join(f"{band}% band covers {value:.3f}" for band, value in off.items())
        return verdict(False, f"miscalibrated: {bands} (tolerance {rules.coverage_tolerance:.3f})", RULE_COVERAGE)
    if rules.require_spl_vs_ewma:
        if spl is None or ewma_spl is None:
            missing = "the challenger" if spl is None else "ewma"
            return verdict(False, f"spl: {missing} has no holdout SPL to compare", RULE_SPL)
        if spl > ewma_spl:
            return verdict(False, f"spl {spl:.4f} is worse than ewma {ewma_spl:.4f}", RULE_SPL)
    quality = _quality(coverage, rules, spl, ewma_spl)
    if theirs is None:
        return verdict(True, f"no champion yet; {metric} {ours:.4f} beats naive {naive:.4f}{quality}")
    needed = theirs * (1.0 - margin)
    if ours < needed:
        return verdict(
            True,
            f"{metric} {ours:.4f} beats champion {theirs:.4f} by more than {margin:.1%} and naive {naive:.4f}{quality}",
        )
    return verdict(
        False,
        f"{metric} {ours:.4f} does not beat champion {theirs:.4f} by {margin:.1%} (needs < {needed:.4f})",
        RULE_CHAMPION,
    )


def first_champion(decision: Decision, significance: dict[str, dict[str, Any]]) -> Decision:
    """On a registry without a champion, a challenger the gate rejected still serves if no step of
    its holdout is significantly worse (Diebold-Mariano at 5%) than naive on absolute error or than
    ewma on pinball loss: a first model that is as good as the baselines beats having none. A
    challenger whose forecasts are not finite never does. Otherwise the decision stands (the
    pipeline then serves the EWMA baseline model; see pipelines.retrain)."""
    if decision.promote or decision.champion is not None or decision.rule == RULE_NONFINITE:
        return decision
    worse = {
        key: [h + 1 for h, verdict in enumerate(test.get("verdict", [])) if verdict == "worse"]
        for key, test in significance.items()
        if key in FIRST_CHAMPION_TESTS
    }
    tested = set(FIRST_CHAMPION_TESTS) <= set(significance)
    if not tested or any(worse.values()):
        found = "; ".join(f"{key} worse at steps {steps}" for key, steps in worse.items() if steps)
        return replace(decision, reason=f"{decision.reason}; no champion yet and {found or 'no DM test'}")
    return replace(
        decision,
        promote=True,
        rule="",
        first=FIRST_BY_DM,
        reason=f"no champion yet: {decision.reason}, but no step is significantly worse than naive or ewma "
        "(Diebold-Mariano, 5%), so it serves until a challenger beats it",
    )


def _quality(coverage: dict[str, float], rules: GateRules, spl: float | None, ewma_spl: float | None) -> str:
    """The passed calibration and SPL checks, for a promotion's reason."""
    text = ""
    if coverage:
        bands = " ".join(f"{band}%={value:.3f}" for band, value in coverage.items())
        text += f"; coverage {bands} within {rules.coverage_tolerance:.3f}"
    if spl is not None and ewma_spl is not None:
        text += f"; spl {spl:.4f} vs ewma {ewma_spl:.4f}"
    return text


def apply(name: str, version: str, decision: Decision) -> None:
    """Move aliases: promoted -> champion (old champion -> previous, tracking.make_champion); else ->
    challenger. Every move is read back (tracking.set_alias): a mismatch is an error, not a log line."""
    if decision.promote:
        tracking.make_champion(name, version)
        log.info("promoted %s version %s to %s (%s)", name, version, CHAMPION, decision.reason)
    else:
        tracking.set_alias(name, CHALLENGER, version)
        log.info("rejected %s version %s: %s", name, version, decision.reason)


def rollback_version(name: str) -> str:
    """The version a rollback of `name` would make champion (its `previous`); ModelNotFoundError
    naming what is missing when there is none. Needs no lock: callers check before taking it."""
    previous = tracking.alias_version(name, PREVIOUS)
    if previous is not None:
        return previous
    if not tracking.model_registered(name):
        raise ModelNotFoundError(f"model '{name}' is not registered: nothing to roll back")
    if tracking.alias_version(name, CHAMPION) is None:
        raise ModelNotFoundError(f"model '{name}' has no '{CHAMPION}' yet: nothing to roll back")
    raise ModelNotFoundError(f"model '{name}': no '{PREVIOUS}' version to roll back to")


def rollback(name: str) -> tuple[str, str]:
    """champion <- previous (and previous <- the old champion, so a rollback can be undone).
    Callers hold the pipeline lock (pipelines.retrain.rollback_locked)."""
    previous = rollback_version(name)
    current = tracking.alias_version(name, CHAMPION)
    tracking.set_alias(name, CHAMPION, previous)
    if current is not None:
        tracking.set_alias(name, PREVIOUS, current)
    tracking.set_version_tags(name, previous, {"rolled_back_from": current or ""})
    log.info("rolled back %s: champion %s -> %s", name, current, previous)
    return current or "", previous
