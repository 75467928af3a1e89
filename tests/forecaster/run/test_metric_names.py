"""forecaster.run.metric_names: what a run's metrics are called decides what MLflow's run page shows
first (charts grouped by the key up to its last "/", groups sorted by name): the headline groups
sort before every detail group, and their size does not grow with the forecasts or the horizon."""

from __future__ import annotations

import math

import pytest

from forecaster.run import metric_names as names
from forecaster.run.metric_names import HEADLINE_GROUPS, MAX_HEADLINE_CHARTS, MAX_VERSION_TAGS

H = 20
POINT = {"mae": [2.0] * H, "rmse": [3.0] * H, "mape": [1.0] * H, "mase": [0.9] * H, "dir_acc": [0.5] * H}
QUANTILE = {"spl": [0.5] * H, "coverage": [0.8] * H, "coverage_80": [0.8] * H, "msis": [9.0] * H, "qlike": [1.0] * H}


def metrics(model_mae: float = 1.0, model_spl: float = 0.45) -> dict[str, dict[str, list[float]]]:
    forecasts = {"naive": dict(POINT), "drift": dict(POINT)}
    for name in ("model", "model_uncalibrated", "ewma", "garch", "rgarch", "har"):
        forecasts[name] = {**POINT, **QUANTILE}
    forecasts["model"] = {**forecasts["model"], "mae": [model_mae] * H, "spl": [model_spl] * H}
    return forecasts


def dm_report(naive: list[str], ewma: list[str]) -> dict[str, dict[str, object]]:
    def block(verdicts: list[str]) -> dict[str, object]:
        return {
            "metric": "x",
            "dm_stat": [-1.0] * len(verdicts),
            "p_value": [None] * len(verdicts),
            "verdict": verdicts,
        }

    return {"model_vs_naive": block(naive), "model_vs_ewma": block(ewma), "model_vs_garch": block(["worse"] * H)}


def group(key: str) -> str:
    return key.rsplit("/", 1)[0]


def test_fits_curves_get_grouped_names_and_reach_the_tracker_under_them() -> None:
    assert [names.curve_name(k) for k in ("train_loss", "val_loss", "lr", "windows_per_s")] == [
        "loss/train",
        "loss/val",
        "train/lr",
        "train/windows_per_s",
    ]
    assert names.curve_name("member2_val_loss") == "train/member2/val_loss"
    assert names.curve_name("grad_norm") == "train/grad_norm"

    logged: list[tuple[dict[str, float], int | None]] = []

    class Fake:
        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            logged.append((metrics, step))

    names.GroupedCurves(Fake()).log_metrics({"train_loss": 0.5, "val_loss": 0.6}, step=3)
    assert logged == [({"loss/train": 0.5, "loss/val": 0.6}, 3)]


def test_the_headline_is_the_model_its_ratios_and_dm_step_counts_whatever_the_horizon_and_forecasts() -> None:
    report = dm_report(["better"] * 5 + ["indistinguishable"] * 15, ["worse"] * 2 + ["better"] * 18)
    head = names.headline(metrics(model_mae=1.0, model_spl=0.45), report)

    assert head["test/model/mae"] == 1.0 and head["test/model/coverage"] == pytest.approx(0.8)
    assert head["test/vs_naive/mae_ratio"] == pytest.approx(0.5)
    assert head["test/vs_ewma/spl_ratio"] == pytest.approx(0.9)
    assert (head["test/vs_naive/steps_better"], head["test/vs_naive/steps_worse"]) == (5, 0)
    assert (head["test/vs_ewma/steps_better"], head["test/vs_ewma/steps_worse"]) == (18, 2)
    assert {group(k) for k in head} == set(HEADLINE_GROUPS) - {"loss"}
    curves = {"loss/train", "loss/val"}
    assert len(head) + len(curves) <= MAX_HEADLINE_CHARTS


def test_every_detail_group_sorts_after_every_headline_group() -> None:
    report = dm_report(["better"] * H, ["better"] * H)
    fit = names.fit_summary(type("Fit", (), {"best_epoch": 3, "best_val_loss": 0.4, "history": [1, 2, 3]})())
    calibration = names.per_forecast("test_calibration", {"model_kupiec_pass_q0.1": 1.0}, ["model"])
    detail = {**names.details(metrics(), report), **fit, **calibration, "train/lr": 0.1, "train/member2/loss": 1.0}
    head = {**names.headline(metrics(), report), "loss/train": 1.0, "loss/val": 1.0}

    shown = sorted({group(k) for k in {**detail, **head}})  # the run page's order of groups
    assert shown[: len(HEADLINE_GROUPS)] == sorted(HEADLINE_GROUPS)
    assert not {group(k) for k in detail} & set(HEADLINE_GROUPS)
    assert all("/" in key for key in {**detail, **head})  # nothing lands in the ungrouped "Model metrics"


def test_details_hold_every_forecasts_every_metric_and_every_comparisons_step_counts() -> None:
    detail = names.details(metrics(), dm_report(["better"] * H, ["worse"] * H))
    assert detail["test_all/model_uncalibrated/qlike"] == 1.0 and detail["test_all/naive/rmse"] == 3.0
    assert len([k for k in detail if k.startswith("test_all/")]) == sum(len(b) for b in metrics().values())
    assert detail["test_dm/model_vs_garch/steps_worse"] == H and detail["test_dm/model_vs_naive/steps_better"] == H


def test_a_flat_summary_is_grouped_by_its_forecast_the_longest_name_first() -> None:
    flat = {"model_uncalibrated_coverage_low_vol": 0.7, "model_coverage_low_vol": 0.8, "pooled_x": 1.0}
    grouped = names.per_forecast("test_calibration", flat, ["model", "model_uncalibrated"])
    assert grouped == {
        "test_calibration/model_uncalibrated/coverage_low_vol": 0.7,
        "test_calibration/model/coverage_low_vol": 0.8,
        "test_calibration/pooled_x": 1.0,
    }


def test_the_by_step_table_holds_each_figure_per_step_and_the_dm_tests() -> None:
    forecasts = metrics()
    forecasts["model"]["mae"] = [float(h) for h in range(1, H + 1)]
    table = names.by_step_table(forecasts, dm_report(["better"] * H, ["better"] * H))
    mae = table[(table["forecast"] == "model") & (table["metric"] == "mae")].iloc[0]
    assert [mae[f"h{h}"] for h in range(1, H + 1)] == list(range(1, H + 1)) and mae["mean"] == pytest.approx(10.5)
    p_value = table[(table["forecast"] == "model_vs_naive") & (table["metric"] == "dm_p_value")].iloc[0]
    assert math.isnan(p_value["h1"]) and math.isnan(p_value["mean"])  # untestable steps stay empty
    assert len(table) == sum(len(b) for b in forecasts.values()) + 2 * 3


def test_the_version_carries_the_digest_and_two_headline_ratios_leaving_room_for_the_verdict() -> None:
    tags = names.version_tags("abc123", metrics(model_mae=1.0, model_spl=0.45))
    assert tags == {"data_digest": "abc123", "mae_vs_naive": "0.5", "spl_vs_ewma": "0.9"}
    verdict = {"gate_promoted", "gate_reason", "gate_rule", "gate_first_champion", "failure_reason"}
    assert len(tags) + len(verdict) <= MAX_VERSION_TAGS
    # a run without the baselines' figures carries what it has
    assert names.version_tags("d", {"model": {"mae": [1.0]}}) == {"data_digest": "d"}
