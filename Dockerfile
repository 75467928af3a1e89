# Image for the api and scheduler services (CPU). For NVIDIA GPUs build with
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126
# and use the GPU variant in docker-compose.gpu.yml.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# torch first, from the CPU (or CUDA) index, so the project's range does not pull another build
RUN pip install "torch==2.13.0" --index-url "$TORCH_INDEX"
COPY pyproject.toml README.md constraints.txt ./
COPY forecaster ./forecaster
COPY service ./service
COPY pipelines ./pipelines
# the versions the test suite passed with (pyproject.toml holds only compatible ranges)
RUN pip install -c constraints.txt .

RUN useradd --create-home app && mkdir -p /data && chown app /data
USER app
EXPOSE 8000
CMD ["forecaster", "serve", "--host", "0.0.0.0", "--port", "8000"]
