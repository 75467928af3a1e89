"""The consistency rules of a daily bar, written once.

`forecaster.data` applies them to whole frames, the service's request schema to one bar (so its
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
