"""Rolling-origin evaluation, written once: the backtest, the baselines, the metrics, the
Diebold-Mariano tests, the backtest table and the figures logged with a run."""
