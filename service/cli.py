"""`forecaster serve`: run the service with uvicorn, in one process (batching does the rest) or
in several worker processes (`--workers N`) that share the port (by default one SO_REUSEPORT
socket each: service.workers) and sum their metrics.

`--model` takes a registered name (its `--alias` followed) or one fixed model reference
(models:/NAME/VERSION, models:/m-<id>, runs:/<run_id>/model, a folder), served as it is: the
service's `model_uri` setting."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape

from forecaster.interface.console import console

# A port a server can be asked to listen on; 0 (any free port) is refused too: the log would not say which.
PORT_RANGE = (1, 65535)
# The options of `serve` that set a service setting: parameter -> Settings field.
FLAG_SETTINGS = {
    "model": "model_name",
    "alias": "alias",
    "device": "device",
    "tracking_uri": "tracking_uri",
    "log_level": "log_level",
    "log_format": "log_format",
    "workers": "workers",
    "reuse_port": "reuse_port",
}


def model_setting(value: str) -> str:
    """The setting `--model VALUE` gives: a reference (a URI scheme, or a path: a '/' or a folder
    here) is the fixed `model_uri`, anything else a registered `model_name`."""
    from forecaster.errors import ModelNotFoundError
    from forecaster.registry.tracking import parse_reference

    try:
        is_reference = parse_reference(value).kind != "path"
    except ModelNotFoundError:
        is_reference = True  # a malformed URI: model_uri's check says what is wrong with it
    return "model_uri" if is_reference or "/" in value or os.path.isdir(value) else "model_name"


def settings_problems(exc: ValidationError, flags: Mapping[str, str]) -> list[str]:
    """One line per invalid setting, naming where it came from: the flag (`flags`: setting ->
    the flag that gave it) or else its FORECASTER_* variable; the value shown with any password
    redacted."""
    from forecaster.errors import redact
    from service.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    lines = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else ""
        source = flags.get(name) or f"{prefix}{name}".upper()
        message = error["msg"].removeprefix("Value error, ").removeprefix(f"{name}: ")  # the library's own naming
        value = redact(repr(error.get("input")))
        lines.append(f"{source}: {message}" + ("" if value in message else f" (got {value})"))
    return lines


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        ctx: typer.Context,
        host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to bind", min=PORT_RANGE[0], max=PORT_RANGE[1])] = 8000,
        model: Annotated[
            str | None,
            typer.Option(
                help="Registered model name (FORECASTER_MODEL_NAME), or one fixed model served as it is, "
                "never followed: models:/NAME/VERSION, models:/m-<id>, runs:/<run_id>/model or a folder "
                "(FORECASTER_MODEL_URI)"
            ),
        ] = None,
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
        """Serve POST /forecast from models:/MODEL@ALIAS, or from one fixed model."""
        import uvicorn

        from service.settings import Settings
        from service.timeouts import http_protocol
        from service.workers import APP_FACTORY, run_workers, settings_env, shared_metrics_dir

        given = {name: value for name, value in ctx.params.items() if name in FLAG_SETTINGS and value is not None}
        fields = {**FLAG_SETTINGS, "model": model_setting(model)} if model is not None else FLAG_SETTINGS
        overrides: dict[str, Any] = {fields[name]: value for name, value in given.items()}
        try:
            settings = Settings.model_validate(overrides)  # fails here, once, before any worker starts
        except ValidationError as exc:
            flags = {fields[p.name]: p.opts[0] for p in ctx.command.params if p.name in given}
            for line in settings_problems(exc, flags):
                console.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
            raise typer.Exit(code=2) from None
        options: dict[str, Any] = {
            "host": host,
            "port": port,
            "log_level": settings.log_level,
            "access_log": False,  # the service writes its own access line (service.middleware)
            "timeout_graceful_shutdown": settings.shutdown_grace_s,
            "loop": "uvloop",
            # httptools with a deadline for a request's headers (service.timeouts); the body's is the app's
            "http": http_protocol(settings.request_header_timeout_s),
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
