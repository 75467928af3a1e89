"""MLflow, and nothing else imports it: the store, runs, the model registry and its aliases, and
the pyfunc wrapper a logged model carries."""
