"""Adjusted daily bars from Yahoo Finance (through yfinance), retried per ticker and cached per ticker.

yfinance's ``download()`` does not raise when one ticker fails: a 404, a rate limit (HTTP 429) or a
timeout just leaves that ticker's columns empty or NaN. Here a requested ticker without a single bar
is a failure: only the failed tickers are asked again after an exponential backoff, and a
``SourceError`` names the ones still missing. With a cache folder each ticker's bars live in
``<cache_dir>/<TICKER>.parquet``; later calls ask only for the days after the last cached bar.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import yfinance as yf
from yfinance.data import YfData

from forecaster.data import PRICE_COLUMNS, read_ohlc_file, validate_ohlc
from forecaster.errors import DataError, SourceError

log = logging.getLogger(__name__)

# Parquet metadata key: the earliest start a cache file was filled from. The first bar can be later
# (a holiday, an IPO), and without this every call would fetch the whole history again.
COVERED_FROM = "yahoo_covered_from"
ONE_DAY = timedelta(days=1)
# Split- and dividend-adjusted OHLC without action columns, quiet, one ticker after the other; in
# yfinance 1.x the columns are a (Price, Ticker) MultiIndex even for a single ticker.
DOWNLOAD_OPTIONS = {"auto_adjust": True, "actions": False, "progress": False, "threads": False, "group_by": "column"}


def fetch_yahoo(
    tickers: list[str],
    start: str | date,
    end: str | date | None = None,
    cache_dir: Path | None = None,
    retries: int = 3,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> pd.DataFrame:
    """Download split- and dividend-adjusted daily OHLCV bars as the tidy frame of ``validate_ohlc``.

    start, end: first and last day wanted, both inclusive; end defaults to yesterday (local date).
    cache_dir: when given, one parquet file per ticker; only days after the cached ones are asked
    for, nothing at all when the cache already reaches ``end``. A file is replaced atomically and
    only with validated bars, so a failed fetch leaves it as it was.
    retries: how many times tickers that came back empty are asked again (``retries + 1`` attempts);
    the n-th retry waits ``backoff_s * 2 ** (n - 1)`` seconds through ``sleep``.
    Raises SourceError naming the tickers with no bars after the last attempt (unknown or delisted
    symbol, rate limit, network); DataError when Yahoo's bars break the frame's rules.
    """
    names = _normalize_tickers(tickers)
    first = _as_date(start, "start")
    last = _as_date(end, "end") if end is not None else date.today() - ONE_DAY
    if last < first:
        raise ValueError(f"end: expected a date on or after start {first}, got {last}")
    if retries < 0:
        raise ValueError(f"retries: expected 0 or more, got {retries}")

    cached = {t: _read_cache(cache_dir, t) for t in names} if cache_dir is not None else {}
    plan = {t: _fetch_from(cached.get(t), first, last) for t in names}
    starts = {t: s for t, s in plan.items() if s is not None}
    if len(starts) < len(names):
        log.info("yahoo: cache covers %s..%s for %s, no request", first, last, [t for t in names if t not in starts])

    fetched, failed = _fetch_with_retries(starts, last, cached, retries, backoff_s, sleep)
    frames: dict[str, pd.DataFrame] = {}
    for ticker in names:
        old = cached.get(ticker)
        frames[ticker] = _merge(old, fetched.get(ticker))
        if cache_dir is not None and ticker in fetched:
            covered = min(first, _covered_from(old)) if old is not None else first
            _write_cache(cache_dir, ticker, frames[ticker], covered)
    if failed:
        raise SourceError(
            f"yahoo: no bars for ticker(s) {failed} between {first} and {last} after {retries + 1} "
            "attempt(s) (yfinance returned them empty: unknown or delisted symbol, rate limit or network)"
        )

    wanted = [f[(f["date"] >= pd.Timestamp(first)) & (f["date"] <= pd.Timestamp(last))] for f in frames.values()]
    result = pd.concat([w for w in wanted if not w.empty] or [pd.DataFrame(columns=["date", "ticker"])])
    empty = [t for t in names if t not in set(result["ticker"])]
    if empty:
        raise DataError(f"yahoo: no bars for ticker(s) {empty} between {first} and {last}")
    return validate_ohlc(result)


def _fetch_with_retries(
    starts: dict[str, date],
    last: date,
    cached: dict[str, pd.DataFrame | None],
    retries: int,
    backoff_s: float,
    sleep: Callable[[float], None],
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Bars per ticker that came back, and the tickers that never did."""
    fetched: dict[str, pd.DataFrame] = {}
    pending = dict(starts)
    for attempt in range(retries + 1):
        if not pending:
            break
        if attempt > 0:
            wait = backoff_s * 2 ** (attempt - 1)
            log.warning(
                "yahoo: no bars for %s (attempt %d/%d); retrying in %.1fs", sorted(pending), attempt, retries + 1, wait
            )
            sleep(wait)
            for ticker in pending:
                # An empty answer for the days after the cache may just mean no trading yet (a
                # holiday); asking again from the last cached bar tells that from a failure.
                old = cached.get(ticker)
                if old is not None and not old.empty:
                    pending[ticker] = min(pending[ticker], old["date"].max().date())
        got = _download(pending, last)
        fetched.update(got)
        pending = {t: s for t, s in pending.items() if t not in got}
    return fetched, sorted(pending)


def _download(starts: dict[str, date], last: date) -> dict[str, pd.DataFrame]:
    """One yf.download per distinct start date; returns only the tickers that came back with bars."""
    groups: dict[date, list[str]] = {}
    for ticker, start in starts.items():
        groups.setdefault(start, []).append(ticker)
    out: dict[str, pd.DataFrame] = {}
    for start, group in sorted(groups.items()):
        log.info("yahoo: asking yfinance for %s from %s to %s", group, start, last)
        # yfinance memoises answers for past date ranges (error pages included) for the whole
        # process; forget them so a retry really asks Yahoo again.
        YfData.cache_get.cache_clear()
        try:
            # yfinance's end is exclusive
            raw = yf.download(group, start=start.isoformat(), end=(last + ONE_DAY).isoformat(), **DOWNLOAD_OPTIONS)
        except Exception as exc:  # any yfinance failure is retried like an empty answer
            log.warning("yahoo: yfinance failed for %s: %r", group, exc)
            continue
        for ticker in group:
            bars = _ticker_bars(raw, ticker, len(group))
            bars = bars[(bars["date"] >= pd.Timestamp(start)) & (bars["date"] <= pd.Timestamp(last))]
            if not bars.empty:
                out[ticker] = validate_ohlc(bars)
    return out


def _ticker_bars(raw: pd.DataFrame | None, ticker: str, n_asked: int) -> pd.DataFrame:
    """One ticker's rows from download()'s wide frame; columns (Price, Ticker) in yfinance 1.x."""
    columns = ["date", "ticker", *PRICE_COLUMNS, "volume"]
    if raw is None or raw.empty:
        return pd.DataFrame(columns=columns)
    if isinstance(raw.columns, pd.MultiIndex):
        names = list(raw.columns.names)
        level = names.index("Ticker") if "Ticker" in names else raw.columns.nlevels - 1
        if ticker not in raw.columns.get_level_values(level):
            return pd.DataFrame(columns=columns)
        wide = raw.xs(ticker, axis=1, level=level)
    elif n_asked == 1:
        wide = raw
    else:
        return pd.DataFrame(columns=columns)
    wide = wide.rename(columns=lambda c: str(c).strip().lower())
    if any(c not in wide.columns for c in PRICE_COLUMNS):
        return pd.DataFrame(columns=columns)
    # Tickers are aligned on the union of their dates: rows another ticker brought are all NaN here.
    wide = wide.dropna(subset=list(PRICE_COLUMNS), how="all")
    dates = pd.DatetimeIndex(wide.index)
    if dates.tz is not None:
        dates = dates.tz_localize(None)
    frame = pd.DataFrame({"date": dates.normalize(), "ticker": ticker})
    for column in (*PRICE_COLUMNS, "volume"):
        frame[column] = wide[column].to_numpy(dtype="float64") if column in wide.columns else float("nan")
    return frame.reset_index(drop=True)


def _fetch_from(cache: pd.DataFrame | None, first: date, last: date) -> date | None:
    """First day to ask Yahoo for, or None when the cache already holds first..last."""
    if cache is None or cache.empty:
        return first if _has_weekday(first, last) else None
    if first < _covered_from(cache):
        return first
    after = cache["date"].max().date() + ONE_DAY
    return after if _has_weekday(after, last) else None


def _merge(old: pd.DataFrame | None, new: pd.DataFrame | None) -> pd.DataFrame:
    """Cached and new bars of one ticker; on a date in both, the new bar wins."""
    parts = [f for f in (old, new) if f is not None and not f.empty]
    if not parts:
        return pd.DataFrame(columns=["date", "ticker", *PRICE_COLUMNS, "volume"])
    merged = pd.concat(parts, ignore_index=True).drop_duplicates(["ticker", "date"], keep="last")
    return validate_ohlc(merged)


def cached_bars(cache_dir: Path, ticker: str) -> pd.DataFrame | None:
    """What the cache holds for a ticker (no request), or None: the offline fallback."""
    return _read_cache(cache_dir, ticker.strip().upper())


def _read_cache(cache_dir: Path, ticker: str) -> pd.DataFrame | None:
    path = Path(cache_dir) / f"{ticker}.parquet"
    if not path.exists():
        return None
    raw = read_ohlc_file(path)
    try:
        frame = validate_ohlc(raw)
    except DataError as exc:
        raise DataError(f"yahoo: cache file '{path}' for ticker {ticker} is invalid: {exc}") from exc
    frame.attrs = dict(raw.attrs)
    if set(frame["ticker"]) != {ticker}:
        raise DataError(f"yahoo: cache file '{path}' holds ticker(s) {sorted(set(frame['ticker']))}, not {ticker}")
    return frame


def _write_cache(cache_dir: Path, ticker: str, frame: pd.DataFrame, covered_from: date) -> None:
    """Write temp file then os.replace: readers see the old file or the new one, never half of one."""
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{ticker}.parquet"
    frame = frame.reset_index(drop=True)
    frame.attrs = {COVERED_FROM: covered_from.isoformat()}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{ticker}.", suffix=".parquet.tmp", dir=cache_dir)
        os.close(handle)
        try:
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as exc:
        raise SourceError(f"yahoo: cannot write cache file '{path}' for ticker {ticker}: {exc}") from exc
    log.info("%s: cached %d bars up to %s in %s", ticker, len(frame), frame["date"].max().date(), path)


def _covered_from(cache: pd.DataFrame) -> date:
    stored = cache.attrs.get(COVERED_FROM)
    return date.fromisoformat(stored) if stored else cache["date"].min().date()


def _has_weekday(first: date, last: date) -> bool:
    return first <= last and len(pd.bdate_range(first, last)) > 0


def _normalize_tickers(tickers: list[str]) -> list[str]:
    if isinstance(tickers, str) or not tickers:
        raise ValueError(f"tickers: expected a non-empty list of symbols, got {tickers!r}")
    names: list[str] = []
    for raw in tickers:
        name = str(raw).strip().upper()
        if not name or any(c in name for c in "/\\") or name.startswith("."):
            raise ValueError(f"tickers: '{raw}' is not a ticker symbol")
        if name not in names:
            names.append(name)
    return names


def _as_date(value: str | date, field: str) -> date:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        stamp = pd.NaT
    if pd.isna(stamp):
        raise ValueError(f"{field}: expected a date like 2013-01-31, got {value!r}")
    return stamp.date()
