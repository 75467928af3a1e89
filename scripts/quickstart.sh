#!/usr/bin/env bash
# The main job on the embedded defaults: local SQLite MLflow store (./mlruns), bundled sample
# data, CPU or CUDA. Trains and registers a champion if there is none, evaluates it, starts
# the service, shows one real forecast with curl, and says where the MLflow UI is.
#   bash scripts/quickstart.sh [--keep-serving]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
MODEL="${FORECASTER_MODEL_NAME:-forecaster}"
PORT="${PORT:-8000}"

if forecaster evaluate --model "models:/$MODEL@champion" --json >/dev/null 2>&1; then
  echo "== models:/$MODEL@champion already exists; skipping training"
else
  echo "== training the default model on the bundled sample and registering it as $MODEL@champion"
  forecaster train --model "$MODEL" --alias champion
fi

echo "== rolling-origin evaluation of models:/$MODEL@champion on the sample's last year"
forecaster evaluate --model "models:/$MODEL@champion" --from 2012-03-01

echo "== starting the service on http://127.0.0.1:$PORT"
FORECASTER_MODEL_NAME="$MODEL" forecaster serve --port "$PORT" --log-level warning &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break
  sleep 1
done
echo '$ curl -s -X POST http://127.0.0.1:'"$PORT"'/forecast -H "content-type: application/json" -d '"'"'{"ticker": "AAPL"}'"'"
curl -sf -X POST "http://127.0.0.1:$PORT/forecast" -H "content-type: application/json" -d '{"ticker": "AAPL"}' \
  | python3 -m json.tool
cat <<MSG

Done. The MLflow UI shows the run, its metrics, plots, dataset and the registered model:
  .venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --port 5000   # then open http://127.0.0.1:5000
The service while it runs: http://127.0.0.1:$PORT/ (its model and links), /docs (Swagger UI), /redoc
(restart it with: .venv/bin/forecaster serve)
MSG
if [ "${1:-}" = "--keep-serving" ]; then
  echo "Serving until Ctrl-C."
  wait $SERVER
fi
