"""One training run: its steps (split, windows, fit, calibrate, evaluate, bundle) and the same
run reported to MLflow (params, curves, metrics, plots, dataset, model, registry)."""
