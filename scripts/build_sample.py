"""Rebuild forecaster/data/sample_data/ohlcv.csv.gz from the bokeh-sampledata wheel.

Usage: pip download --no-deps bokeh-sampledata==2026.1 -d /tmp/w
       python scripts/build_sample.py /tmp/w/bokeh_sampledata-2026.1-py3-none-any.whl
The source OHLC are unadjusted; each row is multiplied by adj_close / close so splits and
dividends are adjusted out (the jumps are removed, not learned). FB (196 rows) is left out.
"""

import gzip
import io
import sys
import zipfile
from pathlib import Path

import pandas as pd

TICKERS = ("AAPL", "GOOG", "IBM", "MSFT")
OUT = Path(__file__).resolve().parents[1] / "forecaster" / "sample_data" / "ohlcv.csv.gz"


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        raw = archive.read("bokeh_sampledata/_data/stocks.csv.gz")
    frame = pd.read_csv(io.BytesIO(gzip.decompress(raw)))
    frame.columns = [c.strip().lower().replace(" ", "_") for c in frame.columns]
    frame = frame[frame["ticker"].isin(TICKERS)].copy()
    factor = frame["adj_close"] / frame["close"]
    for column in ("open", "high", "low", "close"):
        frame[column] = (frame[column] * factor).round(4)
    frame["volume"] = (frame["volume"] / factor).round().astype("int64")
    frame = frame.sort_values(["ticker", "date"])[["date", "ticker", "open", "high", "low", "close", "volume"]]
    with gzip.GzipFile(OUT, "wb", mtime=0) as handle:
        handle.write(frame.to_csv(index=False).encode())


if __name__ == "__main__":
    main(sys.argv[1])
