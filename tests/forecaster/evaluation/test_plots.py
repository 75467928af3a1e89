"""forecaster.evaluation.plots: the forecast figure a person can read: it names the band it draws,
labels its axes, keeps its legend off the data, draws the model's median above the naive line,
says which tickers it draws and why (best, median and worst band coverage), and says what "h steps
ahead by target date" means. Asserted on the matplotlib objects, not on pixels."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from factories import random_ohlc
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from forecaster.data.windows import Panel
from forecaster.evaluation import backtest as evaluate
from forecaster.evaluation.backtest import Backtest
from forecaster.evaluation.plots import band_label, close, forecast_figure

TICKERS = ("AAA", "BBB", "CCC", "DDD")
COVERED = {"AAA": 8, "BBB": 6, "CCC": 4, "DDD": 0}  # of 10 origins inside the 80% band at step 1


def controlled_backtest(origins: int = 10, horizon: int = 2) -> Backtest:
    """Four tickers whose q0.1-q0.9 band holds the actual at 8, 6, 4 and 0 of 10 origins."""
    sid = np.repeat(np.arange(len(TICKERS)), origins)
    n = len(sid)
    actual = np.full((n, horizon), 100.0)
    inside = np.concatenate([np.arange(origins) < COVERED[t] for t in TICKERS])
    lower = np.where(inside, 99.0, 101.0)[:, None] * np.ones((1, horizon))
    upper = lower + 2.0
    median = (lower + upper) / 2
    quantiles = np.stack([lower, median, upper], axis=2)
    days = np.tile(np.arange("2024-01-01", origins, dtype="datetime64[D]"), len(TICKERS))
    return Backtest(
        tickers=TICKERS,
        series_id=sid,
        origin_dates=days,
        last_close=np.full(n, 100.0),
        actual=actual,
        forecasts={"model": median, "naive": np.full((n, horizon), 100.0)},
        quantiles={"model": quantiles},
        levels=(0.1, 0.5, 0.9),
        mase_scale=np.ones(len(TICKERS)),
        target_dates=np.stack([days + 1 + h for h in range(horizon)], axis=1),
    )


@pytest.fixture()
def figure() -> Iterator[Figure]:
    fig = forecast_figure(controlled_backtest(), step=1)
    yield fig
    close(fig)


def test_the_band_is_labelled_by_its_quantile_levels() -> None:
    assert band_label((0.1, 0.5, 0.9)) == "model band q0.1-q0.9 (80%)"
    assert band_label((0.025, 0.1, 0.5, 0.9, 0.975)) == "model band q0.025-q0.975 (95%)"


def test_the_best_median_and_worst_covered_tickers_are_drawn_and_named(figure: Figure) -> None:
    titles = [ax.get_title(loc="left") for ax in figure.axes]
    assert [t.split(":")[0] for t in titles] == ["AAA", "BBB", "DDD"]  # CCC (4 of 10) is left out
    assert "best coverage" in titles[0] and "held 80% of actuals (nominal 80%)" in titles[0]
    assert "median coverage" in titles[1] and "worst coverage" in titles[2] and "held 0%" in titles[2]
    suptitle = figure.get_suptitle()
    assert "3 of 4 tickers" in suptitle and "best, median and worst" in suptitle and "q0.1-q0.9" in suptitle


def test_every_axes_is_labelled_and_the_legend_sits_outside_all_of_them(figure: Figure) -> None:
    for ax in figure.axes:
        assert "target date" in ax.get_xlabel() and ax.get_ylabel() == "close"
        assert ax.get_legend() is None  # no legend drawn over the data
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "actual close",
        "model median",
        "model band q0.1-q0.9 (80%)",
        "naive (last close)",
    ]
    figure.canvas.draw()
    box = legend.get_window_extent()
    for ax in figure.axes:
        assert not box.overlaps(ax.get_window_extent()), "the legend covers an axes"


def test_the_median_is_drawn_above_the_naive_line_in_its_own_style(figure: Figure) -> None:
    for ax in figure.axes:
        lines: dict[str, Line2D] = {str(line.get_label()): line for line in ax.get_lines()}
        median, naive, actual = lines["model median"], lines["naive (last close)"], lines["actual close"]
        assert median.get_zorder() > naive.get_zorder() and median.get_zorder() > actual.get_zorder()
        assert median.get_color() != naive.get_color() and median.get_linewidth() < naive.get_linewidth()
        assert naive.get_alpha() is not None and naive.get_alpha() < 1  # the median shows through where they meet


def test_the_caption_says_what_steps_ahead_by_target_date_means() -> None:
    fig = forecast_figure(controlled_backtest(), step=2, last_origins=7)
    caption = fig.get_supxlabel()
    assert "target date" in caption and "made 2 trading days earlier" in caption and "last 7 forecasts" in caption
    assert fig.get_suptitle().startswith("Close forecast 2 trading days ahead, by target date")
    close(fig)


def test_tickers_can_be_asked_for_by_name_and_an_unknown_one_is_named() -> None:
    fig = forecast_figure(controlled_backtest(), tickers=["CCC"])
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["CCC"] and "1 of 4 tickers" in fig.get_suptitle()
    close(fig)
    with pytest.raises(ValueError, match="tickers: 'ZZZ' not in the backtest"):
        forecast_figure(controlled_backtest(), tickers=["AAA", "ZZZ"])


def test_a_real_backtest_of_two_tickers_draws_both_with_the_models_band() -> None:
    panel = Panel.from_frame(random_ohlc(tickers=("AAA", "BBB"), days=60))
    levels = (0.05, 0.5, 0.95)

    def predict(X: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
        last = X[:, -1, 3].astype(np.float64)[:, None, None]
        return last * np.array([0.95, 1.0, 1.05])[None, None, :] * np.ones((1, 3, 1)), levels

    result = evaluate.backtest(predict, panel, 10, 3, evaluate.rolling_origins(panel, 10, 3))
    fig = forecast_figure(result, step=2)
    assert sorted(ax.get_title(loc="left").split(":")[0] for ax in fig.axes) == ["AAA", "BBB"]
    assert "model band q0.05-q0.95 (90%)" in [t.get_text() for t in fig.legends[0].get_texts()]
    close(fig)
