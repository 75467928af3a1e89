#!/bin/sh
# The forecast ledger's own database beside MLflow's (docker-compose.yml: LEDGER_DB on the postgres
# service, FORECASTER_LEDGER_URI of the api, FORECASTER_RETRAIN_LEDGER_URI of the scheduler). The
# postgres image runs this once, on an empty data volume; on an existing volume create it by hand:
#   docker compose exec postgres createdb -U "$POSTGRES_USER" forecaster_ledger
# Its tables are created and migrated by forecaster itself on first use.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -c "CREATE DATABASE \"$LEDGER_DB\""
