"""HTTP forecast service over the registered forecaster models."""
