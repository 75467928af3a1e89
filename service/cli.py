"""`forecaster serve`: run the service with uvicorn (one worker; batching does the rest)."""

from __future__ import annotations

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
    ) -> None:
        """Serve POST /forecast from models:/MODEL@ALIAS."""
        import uvicorn

        from service.main import create_app
        from service.settings import Settings

        flags = {
            "model_name": model,
            "alias": alias,
            "device": device,
            "tracking_uri": tracking_uri,
            "log_level": log_level,
            "log_format": log_format,
        }
        overrides: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
        settings = Settings.model_validate(overrides)
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_level=settings.log_level,
            access_log=False,  # the service writes its own access line (service.middleware)
            timeout_graceful_shutdown=settings.shutdown_grace_s,
            loop="uvloop",
            http="httptools",
        )
