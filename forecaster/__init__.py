"""forecaster: global LSTM/GRU forecasts of daily OHLC series, tracked in MLflow."""

__version__ = "0.1.0"
