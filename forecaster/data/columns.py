"""Column names: the bars' standard columns and the one mapping from a user's names onto them.

A frame in another dialect (NeuralForecast's ``unique_id, ds``, Yahoo's ``Open, High, ...``) is
renamed here, once, before any validation: the Python API (``id_col=``, ``time_col=``,
``columns=``) and the command line's file reading (``--columns ticker=unique_id,date=ds``) both
call `map_columns`. Names match case-insensitively, as the file reader's headers do. A frame that
still lacks a column after the mapping (a close-only ``unique_id, ds, y`` series) is a DataError
naming what is missing and how to map it.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from forecaster.config import FEATURES
from forecaster.errors import DataError

REQUIRED_COLUMNS: tuple[str, ...] = ("date", "ticker", *FEATURES)  # every bars frame's columns, in order
OPTIONAL_COLUMNS: tuple[str, ...] = ("volume",)
STANDARD_COLUMNS: tuple[str, ...] = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
HOW_TO_MAP = (
    "map your names with id_col= / time_col= / columns={'open': 'Open', ...} in Python or "
    "--columns ticker=unique_id,date=ds,open=Open,... on the command line"
)


def column_map(
    id_col: str | None = None, time_col: str | None = None, columns: Mapping[str, str] | None = None
) -> dict[str, str]:
    """One mapping, standard name -> the frame's name, from the API's arguments: ``id_col`` is the
    ticker's column, ``time_col`` the date's, ``columns`` any standard name's (a name given twice
    with two values is a ValueError)."""
    if columns is not None and not isinstance(columns, Mapping):
        raise TypeError(f"columns: expected a mapping like {{'open': 'Open'}}, got {columns!r}")
    mapping = dict(columns or {})
    for standard, given, argument in (("ticker", id_col, "id_col"), ("date", time_col, "time_col")):
        if given is None:
            continue
        if mapping.get(standard, given) != given:
            other = mapping[standard]
            raise ValueError(f"{argument}: {given!r} and columns['{standard}'] = {other!r} differ; give one")
        mapping[standard] = given
    return mapping


def parse_columns(text: str | None, flag: str = "--columns") -> dict[str, str]:
    """``ticker=unique_id,date=ds`` (the command line) -> {"ticker": "unique_id", "date": "ds"};
    a malformed item is a ValueError naming the flag and the item."""
    mapping: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        standard, sep, name = item.partition("=")
        if not sep or not standard.strip() or not name.strip():
            raise ValueError(f"{flag}: expected NAME=COLUMN items like ticker=unique_id,date=ds, got {item.strip()!r}")
        if standard.strip() in mapping:
            raise ValueError(f"{flag}: {standard.strip()!r} is mapped twice")
        mapping[standard.strip()] = name.strip()
    return mapping


def map_columns(frame: pd.DataFrame, mapping: Mapping[str, str] | None, where: str = "the data") -> pd.DataFrame:
    """`frame` with the mapped columns renamed to their standard names (a copy; the caller's frame
    is left as it is) and every required column checked; see the module docstring for the errors."""
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(STANDARD_COLUMNS))
    if unknown:
        raise ValueError(f"columns: unknown standard name(s) {unknown}; expected some of {list(STANDARD_COLUMNS)}")
    by_lower = {str(c).strip().lower(): c for c in frame.columns}
    renames: dict[object, str] = {}
    for standard, name in mapping.items():
        source = by_lower.get(str(name).strip().lower())
        if source is None:
            raise DataError(
                f"columns: {standard} is mapped to {name!r}, which {where} does not have; found {_found(frame)}"
            )
        renames[source] = standard
    if renames:
        # a standard name the mapping displaces (a 'close' column while 'Adj Close' is mapped to close) goes
        kept = [c for c in frame.columns if c in renames or str(c).strip().lower() not in set(renames.values())]
        frame = frame[kept].rename(columns=renames)
    names = {str(c).strip().lower() for c in frame.columns}
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        close_only = set(FEATURES) - {"close"} <= set(missing)
        why = " (the model reads open, high, low and close bars: a close-only series cannot be forecast)"
        raise DataError(
            f"data: {where} is missing column(s) {missing}{why if close_only else ''}; found {_found(frame)}; "
            + HOW_TO_MAP
        )
    return frame


def _found(frame: pd.DataFrame) -> list[str]:
    return [str(c)[:30] for c in frame.columns[:12]]
