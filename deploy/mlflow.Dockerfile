# The compose `mlflow` service: the official MLflow image at the version pinned in pyproject.toml,
# with the PostgreSQL driver of its backend store installed once, at build time (not at every start).
FROM ghcr.io/mlflow/mlflow:v3.17.2

RUN pip install --no-cache-dir "psycopg2-binary==2.9.13"
