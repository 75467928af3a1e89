"""Scheduled retraining with a promotion gate, built on the forecaster library."""
