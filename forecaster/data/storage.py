"""Bars at rest: one atomic parquet write and one merge of stored bars with new ones.

Both the yfinance cache (one file per ticker) and the retraining pipeline's store (one file) go
through here, so "a reader never sees half a file" and "a stored bar is never silently changed"
are written once.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster.config import FEATURES
from forecaster.errors import DataError

log = logging.getLogger(__name__)

# A stored price may move this much (relative) before the merge calls it a change: float
# round trips are exact, so anything larger is the vendor revising a bar.
PRICE_TOLERANCE = 1e-6
# All changed prices of a ticker within this relative spread of one ratio are one re-adjustment
# (a split or dividend applied to the whole history), not scattered edits. Looser than
# PRICE_TOLERANCE because the vendor's adjusted prices are products of rounded numbers.
FACTOR_SPREAD = 1e-4
MAX_LISTED_DATES = 5


class BarsChangedError(DataError):
    """New bars would change stored ones and overwriting was not asked for. The caller knows what
    its users call that option (a setting, a flag, a parameter) and raises it again with that
    `hint`: ``BarsChangedError(exc.changes, hint)``."""

    def __init__(self, changes: str, hint: str | None = None) -> None:
        self.changes = changes  # what would change, without any remedy
        remedy = f"; to replace them {hint}" if hint else " (replacing stored bars must be asked for)"
        super().__init__(f"{changes}; nothing was written{remedy}")


@dataclass(frozen=True)
class Revision:
    """Stored bars of one ticker that new bars change by more than the tolerance."""

    ticker: str
    dates: tuple[pd.Timestamp, ...]  # the changed dates, oldest first
    max_rel_diff: float  # largest |new - old| / old over the changed prices
    factor: float | None  # new / old when every overlapping price moved by this one ratio

    def describe(self) -> str:
        """One clause naming the ticker, the first changed dates and the size of the change."""
        shown = ", ".join(f"{d:%Y-%m-%d}" for d in self.dates[:MAX_LISTED_DATES])
        more = f" and {len(self.dates) - MAX_LISTED_DATES} more" if len(self.dates) > MAX_LISTED_DATES else ""
        text = f"ticker {self.ticker}: {len(self.dates)} bar(s) changed ({shown}{more}), max relative difference "
        text += f"{self.max_rel_diff:.3g}"
        if self.factor is not None:
            text += f", every price times {self.factor:.6g} (the source re-adjusted its history)"
        return text


def find_revisions(old: pd.DataFrame | None, new: pd.DataFrame, tolerance: float = PRICE_TOLERANCE) -> list[Revision]:
    """Per ticker, the (ticker, date) bars present in both frames whose prices differ beyond tolerance."""
    if old is None or old.empty or new.empty:
        return []
    prices = list(FEATURES)
    both = old[["ticker", "date", *prices]].merge(
        new[["ticker", "date", *prices]], on=["ticker", "date"], suffixes=("_old", "_new")
    )
    if both.empty:
        return []
    before = both[[f"{c}_old" for c in prices]].to_numpy(dtype="float64")
    after = both[[f"{c}_new" for c in prices]].to_numpy(dtype="float64")
    ratio = after / before
    rel = np.abs(ratio - 1.0)
    both["rel"] = rel.max(axis=1)
    revisions = []
    for ticker, rows in both.groupby("ticker", sort=True):
        changed = rows[rows["rel"] > tolerance]
        if changed.empty:
            continue
        ticker_ratio = ratio[both.index.get_indexer(rows.index)]  # every overlapping price, changed or not
        factor = float(np.median(ticker_ratio))
        constant = bool(np.all(np.abs(ticker_ratio / factor - 1.0) <= FACTOR_SPREAD))
        revisions.append(
            Revision(
                ticker=str(ticker),
                dates=tuple(pd.Timestamp(d) for d in changed["date"].sort_values()),
                max_rel_diff=float(changed["rel"].max()),
                factor=factor if constant else None,
            )
        )
    return revisions


def merge_bars(
    old: pd.DataFrame | None,
    new: pd.DataFrame,
    *,
    overwrite: bool = False,
    tolerance: float = PRICE_TOLERANCE,
    what: str = "stored bars",
) -> pd.DataFrame:
    """Stored bars plus new ones, sorted by ticker then date; on a (ticker, date) in both the new row wins.

    A new row may only replace a stored one whose prices it matches within ``tolerance``
    (relative): otherwise a BarsChangedError (a DataError) names each ticker, its first changed dates and the largest
    difference, unless ``overwrite`` is set, in which case the same is logged as a warning.
    what: how messages name the stored bars (a file, a cache).
    """
    if old is None or old.empty:
        return new.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
    revisions = find_revisions(old, new, tolerance)
    if revisions:
        listing = "; ".join(r.describe() for r in revisions)
        if not overwrite:
            raise BarsChangedError(f"data: new bars would change {what} beyond a relative {tolerance:g}: {listing}")
        log.warning("overwriting %s: %s", what, listing)
    combined = pd.concat([old, new], ignore_index=True)
    combined = combined.drop_duplicates(["ticker", "date"], keep="last")
    return combined.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)


TABLE_SUFFIXES: tuple[str, ...] = (".parquet", ".csv")


def check_table_path(path: str | Path, what: str, reads: str | Path | None = None) -> Path:
    """The path if a table (parquet or csv) can be written there, else ValueError naming `what`.

    Checked before any work, so a typo does not cost a whole run: the suffix; not a folder; the
    nearest existing folder above it takes a new file (tried: permissions alone do not say, e.g.
    for root under /sys); and it is not `reads`, the data file the run reads, nor inside `reads`
    when that is a folder of data files (the run would replace its input, or add to it)."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"{what}: expected a {' or '.join(TABLE_SUFFIXES)} file, got '{path.name}'")
    if path.is_dir():
        raise ValueError(f"{what}: '{path}' is a folder; name a file in it")
    if reads is not None:
        source, target = Path(reads).resolve(), path.resolve()
        if target == source:
            raise ValueError(f"{what}: '{path}' is the data file this run reads; write elsewhere")
        if source in target.parents:
            raise ValueError(
                f"{what}: '{path}' is inside the data folder this run reads ('{reads}'), whose next read "
                "would take it as data; write elsewhere"
            )
    folder = path.absolute().parent
    while not folder.exists():
        folder = folder.parent  # the writer creates the missing folders below it
    try:
        if not folder.is_dir():
            raise NotADirectoryError(f"'{folder}' is not a folder")
        with tempfile.NamedTemporaryFile(prefix=f".{path.name}.", suffix=".probe", dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ValueError(f"{what}: cannot write '{path}': {reason}") from None
    return path


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


def write_table_atomically(frame: pd.DataFrame, path: str | Path, attrs: Mapping[str, Any] | None = None) -> Path:
    """Write ``frame`` (without its index) as parquet or csv (by suffix) so readers see the old file
    or the new one, never half.

    The bytes go to a uniquely named temporary file in the same folder (os.replace is atomic only
    within one file system), which then replaces ``path``; the temporary file is removed whatever
    happens. attrs: metadata stored in a parquet file (pandas keeps ``DataFrame.attrs`` there).
    Dates are written as YYYY-MM-DD in csv. Raises OSError when the folder cannot be written; the
    old file is then untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = frame.reset_index(drop=True)  # a copy: the caller's frame and attrs stay as they were
    frame.attrs = dict(attrs or {})
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    # mkstemp makes the file private (0600): give it the mode a plain write would (the file it
    # replaces keeps its mode; a new one gets 0666 less the umask), so readers keep their access
    os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
    try:
        if path.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False, date_format="%Y-%m-%d")
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
