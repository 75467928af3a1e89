"""`forecaster serve`: run the service with uvicorn, in one process (batching does the rest) or
in several worker processes (`--workers N`) that share the port (by default one SO_REUSEPORT
socket each: service.workers) and sum their metrics."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to bind")] = 8000,
        model: Annotated[str | None, typer.Option(help="Registered model name (FORECASTER_MODEL_NAME)")] = None,
        alias: Annotated[str | None, typer.Option(help="Alias to serve (FORECASTER_ALIAS)")] = None,
        device: Annotated[str | None, typer.Option(help="auto | cpu | cuda (FORECASTER_DEVICE)")] = None,
        tracking_uri: Annotated[str | None, typer.Option(help="MLflow URI (FORECASTER_TRACKING_URI)")] = None,
        log_level: Annotated[str | None, typer.Option(help="info, warning, ... (FORECASTER_LOG_LEVEL)")] = None,
        log_format: Annotated[str | None, typer.Option(help="text | json (FORECASTER_LOG_FORMAT)")] = None,
        workers: Annotated[
            int | None, typer.Option(help="Worker processes, each with its own model (FORECASTER_WORKERS)")
        ] = None,
        reuse_port: Annotated[
            bool | None,
            typer.Option(
                "--reuse-port/--shared-socket",
                help="With workers: one SO_REUSEPORT socket per worker, spread by the kernel (the default "
                "on Linux), or one socket they all accept from (FORECASTER_REUSE_PORT)",
            ),
        ] = None,
    ) -> None:
        """Serve POST /forecast from models:/MODEL@ALIAS."""
        import uvicorn

        from service.settings import Settings
        from service.workers import APP_FACTORY, run_workers, settings_env, shared_metrics_dir

        flags = {
            "model_name": model,
            "alias": alias,
            "device": device,
            "tracking_uri": tracking_uri,
            "log_level": log_level,
            "log_format": log_format,
            "workers": workers,
            "reuse_port": reuse_port,
        }
        overrides: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
        settings = Settings.model_validate(overrides)  # fails here, once, before any worker starts
        options: dict[str, Any] = {
            "host": host,
            "port": port,
            "log_level": settings.log_level,
            "access_log": False,  # the service writes its own access line (service.middleware)
            "timeout_graceful_shutdown": settings.shutdown_grace_s,
            "loop": "uvloop",
            "http": "httptools",
        }
        if settings.workers == 1:
            from service.main import create_app

            uvicorn.run(create_app(settings), **options)
            return
        # Spawned workers see only the environment: the flags go there, and each worker's
        # create_app() reads them as every FORECASTER_* setting.
        os.environ.update(settings_env(settings, overrides))
        with shared_metrics_dir():
            run_workers(APP_FACTORY, settings.workers, options, settings.reuse_port)
