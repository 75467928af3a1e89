"""Bars in: sources (file, yfinance, the bundled sample), the one validation of a bars frame, the
rules of a bar, storage, the trading calendar and windowing. numpy and pandas only: no torch,
no MLflow; the only part of the package that reads files of bars."""
