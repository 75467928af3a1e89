"""The consistency rules of a daily bar, written once.

`forecaster.data.validate` applies them to whole frames, the service's request schema to one bar (so its
error names the bar) and its fast path to whole requests at once; all three call these
functions, so the rules cannot drift apart. Numpy only: works on scalars, rows or columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# rule name -> how a broken bar reads; in the order a bar is checked
OHLC_RULES: dict[str, str] = {
    "high_below_low": "high below low",
    "high_below_top": "high below max(open, close)",
    "low_above_bottom": "low above min(open, close)",
}


def ohlc_breaks(open_: Any, high: Any, low: Any, close: Any) -> dict[str, np.ndarray]:
    """rule name -> True where a bar breaks it (elementwise over scalars, rows or columns)."""
    return {
        "high_below_low": np.less(high, low),
        "high_below_top": np.less(high, np.maximum(open_, close)),
        "low_above_bottom": np.greater(low, np.minimum(open_, close)),
    }


def ohlc_consistent(open_: Any, high: Any, low: Any, close: Any) -> bool:
    """True when every bar keeps every rule."""
    return not any(np.any(broken) for broken in ohlc_breaks(open_, high, low, close).values())


# Prices a window may hold. Windows are float32 and the transform takes log ratios between
# prices of one window: 1e-50 becomes 0 and 1e39 becomes inf in float32, and either turns the
# forecast into NaN. Inside these bounds every ratio is at most 1e15 (a log of about 35).
MIN_PRICE = 1e-6
MAX_PRICE = 1e9


def accepted_prices(values: np.ndarray) -> np.ndarray:
    """True where a price is one the model takes: a number in [MIN_PRICE, MAX_PRICE] (NaN compares
    False, so it is refused too). The rule of a model's windows (`Forecaster.window`, batch scoring)
    and of the service's bars."""
    return (values >= MIN_PRICE) & (values <= MAX_PRICE)
