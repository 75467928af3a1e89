"""Adjusted daily bars from Yahoo Finance (through yfinance), retried per ticker and cached per ticker.

yfinance's ``download()`` does not raise when one ticker fails: a 404, a rate limit (HTTP 429) or a
timeout just leaves that ticker's columns empty or NaN, and it prints a report of its own. Here a
requested ticker without a single bar is a failure: only the failed tickers are asked again, under
the one ``RetryPolicy`` of forecaster.data.retry, and a ``SourceError`` names the ones still missing.
yfinance's own logging and warnings are kept out of the user's terminal: its error report becomes
part of one warning per failed attempt.

With a cache folder each ticker's bars live in ``<cache_dir>/<TICKER>.parquet``; later calls ask
only from the last cached bar on. That one overlapping bar is how a re-adjustment is seen: Yahoo
rescales the whole adjusted history after a split or dividend, so when the overlap moved by one
factor the ticker's whole history is downloaded again rather than mixing two price bases.
Yahoo's bars are split-adjusted (auto_adjust), so they are validated without a split check
(``splits=None``), which could only take a real fall near a split factor (AAPL's of 2000-09-29) for one.
"""

from __future__ import annotations

import logging
import threading
import warnings
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import yfinance as yf
from yfinance.data import YfData

from forecaster.config import FEATURES
from forecaster.data.files import read_ohlc_file
from forecaster.data.retry import DEFAULT_RETRY, RetryPolicy
from forecaster.data.rules import check_ticker, parse_day
from forecaster.data.storage import BarsChangedError, find_revisions, merge_bars, write_table_atomically
from forecaster.data.validate import validate_ohlc
from forecaster.errors import DataError, SourceError

log = logging.getLogger(__name__)

# Parquet metadata key: the earliest start a cache file was filled from. The first bar can be later
# (a holiday, an IPO), and without this every call would fetch the whole history again.
COVERED_FROM = "yahoo_covered_from"
ONE_DAY = timedelta(days=1)
# Split- and dividend-adjusted OHLC without action columns, quiet, one ticker after the other; in
# yfinance 1.x the columns are a (Price, Ticker) MultiIndex even for a single ticker.
DOWNLOAD_OPTIONS = {"auto_adjust": True, "actions": False, "progress": False, "threads": False, "group_by": "column"}
Span = tuple[date, date]  # first and last day asked for, both inclusive


def fetch_yahoo(
    tickers: list[str],
    start: str | date,
    end: str | date | None = None,
    cache_dir: Path | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Download split- and dividend-adjusted daily OHLCV bars as the tidy frame of ``validate_ohlc``.

    start, end: first and last day wanted, both inclusive; end defaults to yesterday (local date).
    cache_dir: when given, one parquet file per ticker; only days from the last cached one are asked
    for, nothing at all when the cache already reaches ``end``. A file is replaced atomically and
    only with validated bars, so a failed fetch leaves it as it was. When Yahoo re-adjusted a
    ticker since it was cached (its overlapping bars moved by one factor), the ticker's whole
    cached range is downloaded again and replaces the file (logged).
    retry: attempts and backoff for tickers that came back empty (only those are asked again).
    overwrite: let new bars replace cached bars that differ otherwise than by one factor; without
    it that is a DataError naming ticker and dates, and no file is written.
    Raises SourceError naming the tickers with no bars after the last attempt (unknown or delisted
    symbol, rate limit, network); DataError when Yahoo's bars break the frame's rules.
    """
    names = yahoo_symbols(tickers)
    first = parse_day(start, "start").date()
    last = parse_day(end, "end").date() if end is not None else date.today() - ONE_DAY
    if last < first:
        raise ValueError(f"end: expected a date on or after start {first}, got {last}")

    cached = {t: _read_cache(cache_dir, t) for t in names} if cache_dir is not None else {}
    plan = {t: span for t in names if (span := _span_to_fetch(cached.get(t), first, last)) is not None}
    if len(plan) < len(names):
        log.info("yahoo: cache covers %s..%s for %s, no request", first, last, [t for t in names if t not in plan])

    fetched, failed, reason = _fetch_with_retries(plan, retry)
    replaced = _readjusted(cached, fetched)
    if replaced:
        spans = {t: (min(first, _covered_from(cached[t])), max(last, _last_day(cached[t]))) for t in replaced}
        again, failed_again, reason_again = _fetch_with_retries(spans, retry)
        for ticker in replaced:  # bars on the old basis are never merged with the new ones
            fetched.pop(ticker)
        fetched.update(again)
        failed, reason = sorted(failed + failed_again), reason_again or reason

    frames: dict[str, pd.DataFrame] = {}
    for ticker in names:
        old = None if ticker in replaced else cached.get(ticker)
        new = fetched.get(ticker)
        if new is None:  # not asked (the cache covers it) or failed: the cache as it is
            kept = cached.get(ticker)
            frames[ticker] = _empty() if kept is None else kept
            continue
        where = f"yahoo cache '{_cache_path(cache_dir, ticker)}'" if cache_dir is not None else "yahoo bars"
        try:
            merged = merge_bars(old, new, overwrite=overwrite, what=where)
        except BarsChangedError as exc:  # the remedy as the library's callers spell it
            raise BarsChangedError(exc.changes, "pass overwrite=True (fetch_yahoo, load_source)") from None
        frames[ticker] = validate_ohlc(merged, splits=None)
    if cache_dir is not None:  # only once every merge passed: a refused merge writes nothing
        for ticker in fetched:
            old = cached.get(ticker)
            covered = min(first, _covered_from(old)) if old is not None else first
            _write_cache(cache_dir, ticker, frames[ticker], covered)
    if failed:
        raise SourceError(
            f"yahoo: no bars for ticker(s) {failed} between {first} and {last} after {retry.attempts} "
            f"attempt(s) (unknown or delisted symbol, rate limit or network){reason}"
        )

    wanted = [f[(f["date"] >= pd.Timestamp(first)) & (f["date"] <= pd.Timestamp(last))] for f in frames.values()]
    result = pd.concat([w for w in wanted if not w.empty] or [pd.DataFrame(columns=["date", "ticker"])])
    empty = [t for t in names if t not in set(result["ticker"])]
    if empty:
        raise DataError(f"yahoo: no bars for ticker(s) {empty} between {first} and {last}")
    return validate_ohlc(result, splits=None)


def _span_to_fetch(cache: pd.DataFrame | None, first: date, last: date) -> Span | None:
    """Days to ask Yahoo for, or None when the cache already holds first..last.

    With a cache the span always includes one cached bar, so a re-adjustment shows as a change.
    """
    if cache is None or cache.empty:
        return (first, last) if _has_weekday(first, last) else None
    if first < _covered_from(cache):
        return first, max(last, cache["date"].min().date())
    if not _has_weekday(_last_day(cache) + ONE_DAY, last):
        return None
    return _last_day(cache), last


def _readjusted(cached: dict[str, pd.DataFrame | None], fetched: dict[str, pd.DataFrame]) -> set[str]:
    """Tickers whose new bars rescale every cached bar they overlap by one factor."""
    tickers = set()
    for ticker, new in fetched.items():
        for revision in find_revisions(cached.get(ticker), new):
            if revision.factor is not None:
                log.warning("yahoo: %s since it was cached; downloading its whole history again", revision.describe())
                tickers.add(ticker)
    return tickers


def _fetch_with_retries(plan: dict[str, Span], retry: RetryPolicy) -> tuple[dict[str, pd.DataFrame], list[str], str]:
    """Bars per ticker that came back, the tickers that never did, and yfinance's last reason for them."""
    fetched: dict[str, pd.DataFrame] = {}
    pending = dict(plan)
    reason = ""

    def attempt() -> None:
        nonlocal reason
        got, errors = _download(pending)
        fetched.update(got)
        for ticker in got:
            del pending[ticker]
        if pending:
            reason = f"; yfinance said: {errors}" if errors else ""
            raise SourceError(f"yahoo: no bars for {sorted(pending)}{reason}")

    if pending:
        try:
            retry.call(attempt, "yahoo download")
        except SourceError:
            pass  # the caller names what is still missing, after caching what came back
    return fetched, sorted(pending), reason


def _download(plan: dict[str, Span]) -> tuple[dict[str, pd.DataFrame], str]:
    """One yf.download per distinct span; the tickers that came back with bars, and yfinance's errors."""
    _quiet_yfinance()
    groups: dict[Span, list[str]] = {}
    for ticker, span in plan.items():
        groups.setdefault(span, []).append(ticker)
    out: dict[str, pd.DataFrame] = {}
    errors: list[str] = []
    for (start, last), group in sorted(groups.items()):
        log.info("yahoo: asking yfinance for %s from %s to %s", group, start, last)
        # yfinance memoises answers for past date ranges (error pages included) for the whole
        # process; forget them so a retry really asks Yahoo again.
        YfData.cache_get.cache_clear()
        _YF_ERRORS.take()
        try:
            # yfinance's end is exclusive
            raw = yf.download(group, start=start.isoformat(), end=(last + ONE_DAY).isoformat(), **DOWNLOAD_OPTIONS)
        except Exception as exc:  # any yfinance failure is retried like an empty answer
            errors.append(f"{group}: {exc!r}")
            continue
        finally:
            errors.extend(_report_lines(_YF_ERRORS.take()))
        for ticker in group:
            bars = _ticker_bars(raw, ticker, len(group))
            bars = bars[(bars["date"] >= pd.Timestamp(start)) & (bars["date"] <= pd.Timestamp(last))]
            if not bars.empty:
                out[ticker] = validate_ohlc(bars, splits=None)
    return out, "; ".join(errors)


class _KeptErrors(logging.Handler):
    """Keeps the error lines yfinance logs, per thread, instead of printing them: its multi-line
    failure report becomes part of our one warning per failed attempt."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        text = " ".join(record.getMessage().split())
        if text and "Failed download" not in text:  # the report's header line carries nothing
            self._lines().append(text)

    def take(self) -> list[str]:
        """The lines kept since the last call on this thread (and forget them)."""
        lines = self._lines()
        taken = list(lines)
        lines.clear()
        return taken

    def _lines(self) -> list[str]:
        if not hasattr(self._local, "lines"):
            self._local.lines = []
        lines: list[str] = self._local.lines
        return lines


_YF_ERRORS = _KeptErrors()


def _report_lines(lines: list[str]) -> list[str]:
    """The lines of download()'s closing report (``['SYM']: reason``), which repeat what the
    per-ticker lines said before them; all lines, once each, when there is no report."""
    report = [line for line in lines if line.startswith("[")]
    return report or list(dict.fromkeys(lines))


_QUIET = threading.Lock()


def _quiet_yfinance() -> None:
    """Once per process: yfinance's logger reports to us only, its warnings (pandas deprecation
    notices raised from its code) are ignored, and the sqlite (peewee) and HTTP (urllib3) loggers
    under it stop at warnings unless someone configured them."""
    with _QUIET:
        logger = logging.getLogger("yfinance")
        if _YF_ERRORS in logger.handlers:
            return
        logger.addHandler(_YF_ERRORS)
        logger.propagate = False
        for chatty in ("peewee", "urllib3"):
            if logging.getLogger(chatty).level == logging.NOTSET:
                logging.getLogger(chatty).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", module=r"yfinance(\.|$)")


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=["date", "ticker", *FEATURES, "volume"])


def _last_day(cache: pd.DataFrame) -> date:
    return pd.Timestamp(cache["date"].max()).date()


def _cache_path(cache_dir: Path, ticker: str) -> Path:
    return Path(cache_dir) / f"{ticker}.parquet"


def _write_cache(cache_dir: Path, ticker: str, frame: pd.DataFrame, covered_from: date) -> None:
    """Atomically: readers see the old file or the new one, never half of one."""
    path = _cache_path(cache_dir, ticker)
    try:
        write_table_atomically(frame, path, attrs={COVERED_FROM: covered_from.isoformat()})
    except OSError as exc:
        raise SourceError(f"yahoo: cannot write cache file '{path}' for ticker {ticker}: {exc}") from exc
    log.info("%s: cached %d bars up to %s in %s", ticker, len(frame), _last_day(frame), path)


def _ticker_bars(raw: pd.DataFrame | None, ticker: str, n_asked: int) -> pd.DataFrame:
    """One ticker's rows from download()'s wide frame; columns (Price, Ticker) in yfinance 1.x."""
    columns = ["date", "ticker", *FEATURES, "volume"]
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
    if any(c not in wide.columns for c in FEATURES):
        return pd.DataFrame(columns=columns)
    # Tickers are aligned on the union of their dates: rows another ticker brought are all NaN here.
    wide = wide.dropna(subset=list(FEATURES), how="all")
    dates = pd.DatetimeIndex(wide.index)
    if dates.tz is not None:
        dates = dates.tz_localize(None)
    frame = pd.DataFrame({"date": dates.normalize(), "ticker": ticker})
    for column in (*FEATURES, "volume"):
        frame[column] = wide[column].to_numpy(dtype="float64") if column in wide.columns else float("nan")
    return frame.reset_index(drop=True)


def cached_bars(cache_dir: Path, ticker: str) -> pd.DataFrame | None:
    """What the cache holds for a ticker (no request), or None: the offline fallback."""
    return _read_cache(cache_dir, check_ticker(ticker, "ticker").upper())


def _read_cache(cache_dir: Path, ticker: str) -> pd.DataFrame | None:
    path = _cache_path(cache_dir, ticker)
    if not path.exists():
        return None
    raw = read_ohlc_file(path)
    try:
        frame = validate_ohlc(raw, splits=None)
    except DataError as exc:
        raise DataError(f"yahoo: cache file '{path}' for ticker {ticker} is invalid: {exc}") from exc
    frame.attrs = dict(raw.attrs)
    if set(frame["ticker"]) != {ticker}:
        raise DataError(f"yahoo: cache file '{path}' holds ticker(s) {sorted(set(frame['ticker']))}, not {ticker}")
    return frame


def _covered_from(cache: pd.DataFrame) -> date:
    stored = cache.attrs.get(COVERED_FROM)
    return date.fromisoformat(stored) if stored else cache["date"].min().date()


def _has_weekday(first: date, last: date) -> bool:
    return first <= last and len(pd.bdate_range(first, last)) > 0


def yahoo_symbols(tickers: list[str]) -> list[str]:
    """The symbols to ask Yahoo for: each held to the one ticker rule (`rules.check_ticker`), in
    upper case (Yahoo's symbols are, and a cache file is named by them; a change is logged), each once."""
    if isinstance(tickers, str) or not tickers:
        raise ValueError(f"tickers: expected a non-empty list of symbols, got {tickers!r}")
    names: list[str] = []
    for raw in tickers:
        name = check_ticker(raw, "tickers").upper()
        if name != raw:
            log.warning("yahoo: ticker %r asked for as %r (Yahoo's symbols are upper case)", raw, name)
        if name not in names:
            names.append(name)
    return names
