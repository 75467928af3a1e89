"""Read files of bars: one CSV (plain or compressed) or Parquet file, or a folder of them, within size limits.

A file is measured before it is parsed: a CSV is streamed through its decompressor once (a
compressed file's text then goes to the parser from memory), counting bytes, rows and the longest
cell, and refused as soon as one of `ReadLimits` is passed (a 310 KB gzip that inflates to 300 MB
of 1 MB numbers is refused at its first long cell, in milliseconds, instead of taking minutes and
gigabytes in the CSV parser); a Parquet file by its own metadata. Only then does pandas read it.
The limits are far above any daily-bars file (20 million rows is 80 years of 1,000 tickers) and
can be raised per call (`read_ohlc_path(path, limits=...)`, `load_source(..., limits=...)`).
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from forecaster.data.columns import HOW_TO_MAP, REQUIRED_COLUMNS, map_columns
from forecaster.errors import DataError, one_line

DATA_SUFFIXES: tuple[str, ...] = (".csv", ".gz", ".parquet", ".pq")
ROW_SOURCES = "forecaster_row_sources"  # frame.attrs key: where each file of a folder starts
# compressed CSVs read by suffix (as pandas infers them): the decompressor the scan streams through
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip"}
CHUNK_BYTES = 1 << 22  # 4 MiB read at a time by the scan
_COMMA, _NEWLINE = ord(","), ord("\n")


@dataclass(frozen=True)
class ReadLimits:
    """How large a file of bars may be: rows, bytes once decompressed, characters in one CSV cell.
    A folder's files share the row and byte limits."""

    max_rows: int = 20_000_000
    max_bytes: int = 1 << 30  # 1 GiB of text (a CSV decompressed; a Parquet file's uncompressed data)
    max_cell_chars: int = 256  # a date with time and offset is 32, a price about 20, a ticker at most 32

    def __post_init__(self) -> None:
        for name in ("max_rows", "max_bytes", "max_cell_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")


DEFAULT_LIMITS = ReadLimits()


@dataclass(frozen=True)
class Measured:
    """What the scan of one file found: data rows (the header excluded) and bytes of text."""

    rows: int
    bytes: int


def read_ohlc_file(
    path: str | Path, limits: ReadLimits = DEFAULT_LIMITS, columns: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Read a long-format CSV (optionally gzip, bz2, xz or zip compressed) or Parquet file; headers
    are case-insensitive.

    Anything that is not a readable table with the required columns (a truncated archive, binary
    garbage, text that is not UTF-8, an empty file) or that passes `limits` is a one-line DataError
    naming the file, raised before the table is parsed. columns: the file's names of the standard
    columns (`forecaster.data.columns.map_columns`), e.g. {"ticker": "unique_id", "date": "ds"}.
    """
    return _read(Path(path), limits, columns=columns)[0]


def read_ohlc_path(
    path: str | Path, limits: ReadLimits = DEFAULT_LIMITS, columns: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """One file, or every CSV/Parquet file of a folder (sorted by name) as one frame; the folder's
    files together stay within the row and byte limits."""
    path = Path(path)
    if not path.is_dir():
        return read_ohlc_file(path, limits, columns)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
    if not files:
        raise DataError(f"data: folder '{path}' holds no CSV or Parquet file")
    frames, left = [], limits
    for file in files:
        frame, size = _read(file, left, folder=path, columns=columns)
        frames.append(frame)
        left = replace(left, max_rows=max(1, left.max_rows - size.rows), max_bytes=max(1, left.max_bytes - size.bytes))
    frame = pd.concat(frames, ignore_index=True)
    # where each file's rows start, so that validation names a bad row by its file and row there
    starts = np.cumsum([0] + [len(f) for f in frames[:-1]]).tolist()
    frame.attrs[ROW_SOURCES] = list(zip(starts, [p.name for p in files], strict=True))
    return frame


def _read(
    path: Path, limits: ReadLimits, folder: Path | None = None, columns: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, Measured]:
    if not path.exists():
        raise DataError(f"data: file '{path}' does not exist")
    suffixes = "".join(path.suffixes).lower()
    parquet = suffixes.endswith(".parquet") or suffixes.endswith(".pq")
    compression = COMPRESSIONS.get(path.suffix.lower())
    try:
        if parquet:
            size = _measure_parquet(path, limits, folder)
            frame = pd.read_parquet(path)
        else:
            size, text = _measure_csv(path, compression, limits, folder)
            frame = pd.read_csv(path if text is None else text)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(
            f"data: cannot read '{path}': not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 CSV"
        ) from exc
    except (EOFError, zlib.error, lzma.LZMAError) as exc:
        raise DataError(f"data: cannot read '{path}': truncated or corrupt archive ({one_line(exc)})") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"data: cannot read '{path}': the file is empty") from exc
    except (OSError, ValueError, ImportError, pa.ArrowException, zipfile.BadZipFile) as exc:  # ParserError: ValueError
        raise DataError(f"data: cannot read '{path}': {one_line(exc)}") from exc
    if columns:
        frame = map_columns(frame, columns, f"'{path}'")
    frame.columns = lowercase_columns(frame.columns, f"'{path}'")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        found = [str(c)[:30] for c in frame.columns[:10]]
        raise DataError(
            f"data: '{path}' is not an OHLC table: missing column(s) {missing}; found {found} "
            f"(expected a header {','.join(REQUIRED_COLUMNS)}[,volume]; {HOW_TO_MAP})"
        )
    if frame.empty:
        raise DataError(f"data: '{path}' has a header but no rows")
    return frame, size


def lowercase_columns(columns: pd.Index, where: str) -> list[str]:
    """Stripped lower-case names; two that differ only in case (close, Close) would be ambiguous."""
    names = [str(c).strip().lower() for c in columns]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        variants = [str(c) for c in columns if str(c).strip().lower() in clashes]
        raise DataError(f"data: columns {variants} in {where} are the same name in another case; keep one of each")
    return names


def _too_large(path: Path, what: str, folder: Path | None) -> DataError:
    where = f" (with the folder's earlier files of '{folder}')" if folder is not None else ""
    return DataError(
        f"data: '{path}' is too large to read: {what}{where}; split it, or raise the limit "
        "(forecaster.data.files.ReadLimits, the limits= argument of read_ohlc_path and load_source)"
    )


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@contextmanager
def _text_stream(path: Path, compression: str | None) -> Iterator[_Readable]:
    """The file's bytes as pandas will read them: through its decompressor, if any."""
    if compression == "gzip":
        with gzip.open(path, "rb") as stream:
            yield stream
    elif compression == "bz2":
        with bz2.open(path, "rb") as stream:
            yield stream
    elif compression == "xz":
        with lzma.open(path, "rb") as stream:
            yield stream
    elif compression == "zip":
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise ValueError(f"a zip file must hold exactly one file, found {len(names)}")
            with archive.open(names[0]) as stream:
                yield stream
    else:
        with path.open("rb") as stream:
            yield stream


def _measure_csv(
    path: Path, compression: str | None, limits: ReadLimits, folder: Path | None
) -> tuple[Measured, io.BytesIO | None]:
    """Stream the text once, refusing it at the first limit passed (bytes after decompression, rows:
    lines after the header, a cell's length: the characters between two commas or line ends; a
    quoted cell holding commas counts in pieces, and the byte limit still bounds it) or at the first
    byte that is not UTF-8. A plain file is read CHUNK_BYTES at a time and left on disk for the
    parser; a compressed file's text is kept (at most max_bytes), so it is decompressed only once
    (twice cost a 40 MB gzip a second)."""
    total = lines = 0
    run = 0  # characters since the last comma or line end, carried across chunks
    utf8 = codecs.getincrementaldecoder("utf-8")()  # binary garbage is named as such, not as a long cell
    kept = io.BytesIO() if compression is not None else None
    with _text_stream(path, compression) as stream:
        while chunk := stream.read(CHUNK_BYTES):
            try:
                utf8.decode(chunk)
            except UnicodeDecodeError as exc:  # where in the file, not in the chunk
                raise UnicodeDecodeError(
                    exc.encoding, exc.object, total + exc.start, total + exc.end, exc.reason
                ) from None
            total += len(chunk)
            if total > limits.max_bytes:
                raise _too_large(path, f"more than {limits.max_bytes:,} bytes of text", folder)
            codes = np.frombuffer(chunk, dtype=np.uint8)
            ends = np.flatnonzero((codes == _COMMA) | (codes == _NEWLINE))
            if len(ends) == 0:
                run += len(codes)
            else:
                longest = max(run + int(ends[0]), int(np.diff(ends).max(initial=1)) - 1)
                run = len(codes) - int(ends[-1]) - 1
                if longest > limits.max_cell_chars:
                    raise _too_large(path, f"a cell of more than {limits.max_cell_chars:,} characters", folder)
            if run > limits.max_cell_chars:
                raise _too_large(path, f"a cell of more than {limits.max_cell_chars:,} characters", folder)
            lines += chunk.count(b"\n")
            if lines - 1 > limits.max_rows:
                raise _too_large(path, f"more than {limits.max_rows:,} rows", folder)
            if kept is not None:
                kept.write(chunk)
    if kept is not None:
        kept.seek(0)
    return Measured(rows=max(0, lines - 1), bytes=total), kept


def _measure_parquet(path: Path, limits: ReadLimits, folder: Path | None) -> Measured:
    """A Parquet file's rows and uncompressed bytes, from its footer, before any column is read."""
    meta = pq.ParquetFile(path).metadata
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if meta.num_rows > limits.max_rows:
        raise _too_large(path, f"{meta.num_rows:,} rows, more than {limits.max_rows:,}", folder)
    if size > limits.max_bytes:
        raise _too_large(path, f"{size:,} bytes of data, more than {limits.max_bytes:,}", folder)
    return Measured(rows=meta.num_rows, bytes=size)
