"""A /forecast body parsed in one pass: orjson decode, then every bar of every series checked at once.

The fast path accepts only bodies it can show are valid: exact JSON types, canonical ISO dates and
every rule of `schemas.Bar`, `SeriesIn` and `ForecastRequest` checked column-wise with numpy, with
no Python object per bar. Anything else (a bad bar, an unknown field, a numeric string, a NaN
literal) is handed to pydantic's `ForecastRequest`, which accepts it or names the field exactly as
before; the schema stays the one owner of the rules' wording, and this module only has to be right
about what is valid, never about how to word an error.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from forecaster.data.calendar import CALENDAR_START
from forecaster.data.rules import accepted_prices, latest_bar_day, ohlc_consistent
from service.schemas import (
    BAR_FIELDS,
    ID_MAX_LENGTH,
    TICKER_MAX_LENGTH,
    ForecastRequest,
    SeriesIn,
    ticker_symbol,
)

REQUEST_KEYS = frozenset(ForecastRequest.model_fields)
SERIES_KEYS = frozenset(SeriesIn.model_fields)
BAR_KEYS = frozenset(BAR_FIELDS)
_BAR_VALUES = operator.itemgetter(*BAR_FIELDS)
_CALENDAR_START = np.datetime64(CALENDAR_START, "D")


@dataclass(frozen=True)
class SeriesBody:
    """One series of a request: its bars as arrays (history) or a ticker; `field` prefixes its errors;
    `id` is what the answer echoes (given, else the ticker, else the index, else "series")."""

    id: str
    field: str
    prices: np.ndarray | None = None  # [L, 4] float64 open, high, low, close; oldest first
    last_date: dt.date | None = None
    ticker: str | None = None


@dataclass(frozen=True)
class ParsedRequest:
    """A valid /forecast body: the envelope and its series (`many` when it came as `series`)."""

    model: str | None
    alias: str | None
    version: int | None
    horizon: int | None
    many: bool
    series: list[SeriesBody]


class _NotFast(Exception):
    """This body needs pydantic (it may still be valid)."""


def is_json(content_type: str | None) -> bool:
    """FastAPI's rule (strict content type, its default): a body is JSON only when it says so."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def parse_body(raw: bytes, content_type: str | None = "application/json") -> ParsedRequest:
    """The request a body holds. Raises RequestValidationError, as FastAPI would, for a body that
    is not JSON (or not declared JSON), names a key twice in one object, or breaks the schema."""
    # orjson keeps the last of a repeated key without a word, so the fast path takes only bodies
    # that show they repeat none: with no backslash (no escape can spell a key a second way), every
    # key ends in a literal `":` and no string holds a quote, so `":` occurs once per key exactly
    # when each key was written once (and directly followed by its colon: `"a" : 1` goes slow too).
    if is_json(content_type) and b"\\" not in raw:
        try:
            parsed, keys = _fast(orjson.loads(raw))
            if raw.count(b'":') == keys:
                return parsed
        except (orjson.JSONDecodeError, _NotFast, KeyError, OverflowError, TypeError, ValueError):
            pass
    return _slow(raw, is_json(content_type))


def _slow(raw: bytes, declared_json: bool = True) -> ParsedRequest:
    """FastAPI's own path: the stdlib decoder (it reads NaN and Infinity, which the schema then
    names), pydantic's validation, its errors under `body`. A body not declared JSON is validated
    as the bytes it is (and refused), as FastAPI does."""
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    decoded: Any = raw
    if declared_json:
        twice: list[bool] = []
        try:
            decoded = json.loads(raw, object_pairs_hook=lambda pairs: _object(pairs, twice))
        except json.JSONDecodeError as exc:
            raise _not_json(exc.msg, exc.pos) from exc
        except UnicodeDecodeError as exc:  # not text at all: named like any other JSON error, a 422
            raise _not_json(f"not UTF-8 text ({exc.reason})", exc.start) from exc
        except RecursionError as exc:  # the stdlib decoder recurses once per [ or {
            raise _not_json("arrays or objects nested too deeply") from exc
        except ValueError as exc:  # the only other: an integer over sys.get_int_max_str_digits()
            raise _not_json(f"a number longer than {sys.get_int_max_str_digits()} digits") from exc
        if twice:
            raise _repeated_key(decoded)
    try:
        body = ForecastRequest.model_validate(decoded)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc
    _check_unique_ids([item.id for item in body.series or []])
    many = body.series is not None
    single = [SeriesIn.model_construct(ticker=body.ticker, history=body.history)]
    items = body.series if body.series is not None else single
    series = []
    for index, item in enumerate(items):
        field = f"series[{index}]." if many else ""
        name = item.id or item.ticker or (str(index) if many else "series")
        if item.history is None:
            series.append(SeriesBody(name, field, ticker=item.ticker))
        else:
            prices = np.array([[b.open, b.high, b.low, b.close] for b in item.history], dtype=np.float64)
            series.append(SeriesBody(name, field, prices, item.history[-1].date))
    return ParsedRequest(body.model, body.alias, body.version, body.horizon, many, series)


class _Twice(dict[str, Any]):
    """A decoded JSON object that named `key` more than once (JSON keeps the last; we refuse it)."""

    def __init__(self, pairs: list[tuple[str, Any]], key: str) -> None:
        super().__init__(pairs)
        self.key = key


def _object(pairs: list[tuple[str, Any]], twice: list[bool]) -> dict[str, Any]:
    """The stdlib decoder's object hook: a dict, or a _Twice (noted in `twice`) for a repeated key."""
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    seen: set[str] = set()
    twice.append(True)
    return _Twice(pairs, next(k for k, _ in pairs if k in seen or seen.add(k)))  # type: ignore[func-returns-value]


def _repeated_key(decoded: Any) -> RequestValidationError:
    """The 422 for the first object (depth first) that named a key twice, at that key's path."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(decoded, ("body",))]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, _Twice):
            where = (*loc, value.key)
            message = "given more than once in one object (each key at most once)"  # the 422 names the field
            return RequestValidationError([{"type": "value_error", "loc": where, "msg": message, "input": None}])
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        stack.extend((child, (*loc, key)) for key, child in reversed(list(items)))
    raise AssertionError("a repeated key was noted but not found")  # the hook saw one: unreachable


def _not_json(reason: str, position: int = 0) -> RequestValidationError:
    error = {"type": "json_invalid", "loc": ("body", position), "msg": "JSON decode error", "input": {}}
    return RequestValidationError([{**error, "ctx": {"error": reason}}])


def _check_unique_ids(ids: list[str | None]) -> None:
    """Answers are matched to series by id: an id given twice is refused, at its second use."""
    first: dict[str, int] = {}
    for index, id_ in enumerate(ids):
        if id_ is None:
            continue
        if id_ in first:
            message = f"'{id_}' is already the id of series[{first[id_]}]; ids must be unique"
            raise RequestValidationError(
                [{"type": "value_error", "loc": ("body", "series", index, "id"), "msg": message, "input": id_}]
            )
        first[id_] = index


def _optional(value: Any, kind: type) -> Any:
    if value is not None and type(value) is not kind:
        raise _NotFast
    return value


def _name(value: Any) -> str | None:
    """A model or alias: absent, or a non-empty string ("" would silently mean the default)."""
    if value is not None and (type(value) is not str or not value):
        raise _NotFast
    return value


def _positive(value: Any) -> int | None:
    if value is not None and (type(value) is not int or value < 1):
        raise _NotFast
    return value


def _ticker(value: Any) -> str:
    if type(value) is not str or not 1 <= len(value) <= TICKER_MAX_LENGTH:
        raise _NotFast
    ticker_symbol(value)  # its ValueError means: let pydantic word it
    return value


def _fast(body: Any) -> tuple[ParsedRequest, int]:
    """The request and the number of object keys it holds (parse_body's check for repeated keys)."""
    if type(body) is not dict or not body.keys() <= REQUEST_KEYS:
        raise _NotFast
    alias, version = _name(body.get("alias")), _positive(body.get("version"))
    given = [name for name in ("history", "ticker", "series") if body.get(name) is not None]
    if len(given) != 1 or (alias is not None and version is not None):
        raise _NotFast
    envelope = (_name(body.get("model")), alias, version, _positive(body.get("horizon")))
    if given == ["ticker"]:
        ticker = _ticker(body["ticker"])
        return ParsedRequest(*envelope, False, [SeriesBody(ticker, "", ticker=ticker)]), len(body)
    if given == ["history"]:
        series, keys = _histories([("series", "", body["history"])])
        return ParsedRequest(*envelope, False, series), len(body) + keys
    items = body["series"]
    if type(items) is not list or not items:
        raise _NotFast
    histories: list[tuple[str, str, Any]] = []
    tickers: dict[int, SeriesBody] = {}
    ids: set[str] = set()
    keys = len(body)
    for index, item in enumerate(items):
        if type(item) is not dict or not item.keys() <= SERIES_KEYS:
            raise _NotFast
        keys += len(item)
        id_ = _optional(item.get("id"), str)
        if id_ is not None and (len(id_) > ID_MAX_LENGTH or id_ in ids):
            raise _NotFast
        if id_ is not None:
            ids.add(id_)
        history, symbol = item.get("history"), item.get("ticker")
        if (history is None) == (symbol is None):
            raise _NotFast
        if symbol is not None:
            symbol = _ticker(symbol)
            tickers[index] = SeriesBody(id_ or symbol, f"series[{index}].", ticker=symbol)
        else:
            histories.append((id_ or str(index), f"series[{index}].", history))
    series, bar_keys = _histories(histories)
    checked = iter(series)
    many = [tickers[i] if i in tickers else next(checked) for i in range(len(items))]
    return ParsedRequest(*envelope, True, many), keys + bar_keys


def _add_columns(history: Any, columns: list[list[Any]]) -> tuple[int, int]:
    """Append the bars of a list or columnar history to the five `columns` (date, open, high, low,
    close), unchecked; returns how many bars and how many object keys it had."""
    if type(history) is dict:
        if history.keys() != BAR_KEYS:
            raise _NotFast
        given = [history[name] for name in BAR_FIELDS]
        if any(type(c) is not list for c in given) or len({len(c) for c in given}) != 1:
            raise _NotFast
    else:
        # Five keys each, all of them ours (itemgetter raises KeyError for any other), read in C.
        if type(history) is not list or set(map(len, history)) != {len(BAR_FIELDS)}:
            raise _NotFast
        given = list(zip(*map(_BAR_VALUES, history), strict=True))
    for column, values in zip(columns, given, strict=True):
        column.extend(values)
    bars = len(given[0]) if given else 0
    return bars, len(BAR_FIELDS) * (1 if type(history) is dict else bars)


def _iso_days(dates: list[Any]) -> np.ndarray:
    """Canonical YYYY-MM-DD strings -> datetime64[D], vectorised over their bytes (numpy's own
    string parsing costs about 1 us a date); _NotFast for anything else, pydantic reads the rest."""
    # numpy picks the dtype in C: exactly <U10 only when every item is a str of at most 10 characters
    # (numbers and bools become longer text); a shorter one is padded with NULs, which fail below.
    text = np.array(dates)
    if text.dtype != np.dtype("<U10"):
        raise _NotFast
    text = text.view(np.uint32).reshape(len(dates), 10)  # -> (bars, 10) code points
    digits = text[:, [0, 1, 2, 3, 5, 6, 8, 9]].astype(np.int64) - ord("0")
    if not ((text[:, [4, 7]] == ord("-")).all() and ((digits >= 0) & (digits <= 9)).all()):
        raise _NotFast
    year = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
    month, day = digits[:, 4] * 10 + digits[:, 5], digits[:, 6] * 10 + digits[:, 7]
    if not ((month >= 1) & (month <= 12) & (day >= 1)).all():
        raise _NotFast
    first = ((year - 1970) * 12 + month - 1).astype("datetime64[M]")
    month_days = ((first + 1).astype("datetime64[D]") - first.astype("datetime64[D]")).astype(np.int64)
    if not (day <= month_days).all():
        raise _NotFast
    return first.astype("datetime64[D]") + (day - 1)


def _histories(items: list[tuple[str, str, Any]]) -> tuple[list[SeriesBody], int]:
    """Every history of a request checked at once: their bars concatenated, rules column-wise;
    with the number of object keys the histories held."""
    if not items:
        return [], 0
    columns: list[list[Any]] = [[] for _ in BAR_FIELDS]
    counts = [_add_columns(history, columns) for _, _, history in items]
    lengths = [bars for bars, _ in counts]
    if min(lengths) == 0:
        raise _NotFast
    days = _iso_days(columns[0])
    latest = np.datetime64(latest_bar_day(), "D")  # the one rule of a bar's latest date
    if days.min() < _CALENDAR_START or days.max() > latest:
        raise _NotFast
    ends = np.cumsum(lengths)
    steps = np.diff(days).astype(np.int64) > 0
    steps[ends[:-1] - 1] = True  # the step from one series to the next is no step
    if not steps.all():
        raise _NotFast
    # Numbers only: a str, None or an int beyond int64 makes numpy pick text or object. A bool is no
    # number, yet numpy reads it among numbers as 1 or 0: 0 is no price (refused below), so only
    # the bars holding a 1 are looked at one by one (a bool alone is dtype bool).
    ohlc = np.array(columns[1:])
    if ohlc.dtype.kind not in "fi":
        raise _NotFast
    ones = np.nonzero(ohlc == 1)
    if any(type(columns[1 + f][i]) is bool for f, i in zip(*(axis.tolist() for axis in ones), strict=True)):
        raise _NotFast
    ohlc = ohlc.astype(np.float64).T  # -> (bars, 4)
    open_, high, low, close = ohlc.T
    valid = accepted_prices(ohlc).all() and ohlc_consistent(open_, high, low, close)
    if not valid:
        raise _NotFast
    last_days = days[ends - 1].tolist()  # -> datetime.date
    return [
        SeriesBody(id_, field, ohlc[stop - length : stop], last)
        for (id_, field, _), stop, length, last in zip(items, ends.tolist(), lengths, last_days, strict=True)
    ], sum(keys for _, keys in counts)
