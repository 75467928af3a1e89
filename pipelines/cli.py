"""`forecaster retrain` and `forecaster rollback`.

Every RetrainSettings field is also a flag (`--model-name X`, `--epochs 5`, `--margin=0.02`);
flags override the YAML config, which overrides the defaults.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer

from pipelines.settings import RetrainSettings

log = logging.getLogger("pipelines")


def parse_flags(args: list[str]) -> dict[str, Any]:
    """['--epochs', '5', '--margin=0.1'] -> {'epochs': '5', 'margin': '0.1'}; unknown names fail."""
    known = set(RetrainSettings.model_fields)
    values: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ValueError(f"retrain: unexpected argument '{arg}'")
        name, _, value = arg[2:].partition("=")
        key = name.replace("-", "_")
        if key not in known:
            raise ValueError(f"retrain: unknown option '--{name}'; settings are: {', '.join(sorted(known))}")
        if not _:
            if i + 1 >= len(args):
                raise ValueError(f"retrain: option '--{name}' needs a value")
            value = args[i + 1]
            i += 1
        values[key] = value
        i += 1
    return values


def register(app: typer.Typer) -> None:
    from forecaster.cli import friendly_errors, setup_logging

    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    @friendly_errors
    def retrain(
        ctx: typer.Context,
        config: Annotated[str | None, typer.Option(help="YAML settings, e.g. pipelines/retrain.yaml")] = None,
        schedule: Annotated[str | None, typer.Option(help="Cron expression: keep running and fire on it")] = None,
        once: Annotated[bool, typer.Option("--once", help="Run once now even if the config has a schedule")] = False,
        max_runs: Annotated[int | None, typer.Option(help="Stop the scheduler after N runs")] = None,
    ) -> None:
        """Refresh data, train a challenger, gate it against the champion, promote or not.

        Any setting is also a flag: --model-name, --source, --data-path, --tickers, --arch, --mode, --lookback,
        --horizon, --hidden, --layers, --epochs, --lr, --metric, --margin, --timezone, --on-busy, ...
        """
        from pipelines.retrain import run_locked
        from pipelines.schedule import run_on_schedule
        from pipelines.settings import load_settings

        setup_logging(verbose=True)
        logging.getLogger("pipelines").setLevel(logging.INFO)
        overrides = parse_flags(list(ctx.args))
        if schedule:
            overrides["schedule"] = schedule
        settings = load_settings(config, overrides)
        if settings.schedule and not once:
            run_on_schedule(
                lambda: run_locked(settings), settings.schedule, settings.timezone, max_runs, settings.run_on_start
            )
            return
        report = run_locked(settings)
        if report is None:
            typer.echo('{"skipped": true}')
            return
        import json

        typer.echo(
            json.dumps(
                {
                    "run_id": report.run_id,
                    "version": report.version,
                    "promoted": report.decision.promote,
                    "reason": report.decision.reason,
                    "champion_before": report.champion_before,
                    "champion_after": report.champion_after,
                }
            )
        )

    @app.command()
    @friendly_errors
    def rollback(
        model: Annotated[str, typer.Option(help="Registered model name")],
        tracking_uri: Annotated[str | None, typer.Option()] = None,
    ) -> None:
        """Move `champion` back to the `previous` version."""
        from forecaster import tracking
        from pipelines.promote import rollback as do_rollback

        setup_logging()
        tracking.configure(tracking_uri)
        old, new = do_rollback(model)
        typer.echo(f"{model}: champion {old} -> {new}")
