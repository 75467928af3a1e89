"""`forecaster retrain` and `forecaster rollback`.

Every setting of `pipelines.settings.RetrainSettings` is a flag (``--model X``,
``--training.train.epochs 5``, or the shortcut ``--epochs 5``), parsed by pydantic-settings'
CLI source; flags override FORECASTER_RETRAIN_* environment variables, which override the
YAML file, which overrides the defaults.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer
from typer._click import Context, HelpFormatter
from typer.core import TyperCommand

from forecaster.interface.console import friendly_errors, setup_logging
from forecaster.interface.overrides import settings_help, to_yaml

log = logging.getLogger("pipelines")

RETRAIN_HELP = (
    "Refresh data, train a challenger, gate it against the champion, promote or not.\n\n"
    "Settings (flags > FORECASTER_RETRAIN_* env (nested with __) > --config YAML > defaults); "
    "the flat shortcuts of `forecaster train` (--epochs, --hidden, --lookback, ...) work too:\n\n"
)


class RetrainCommand(TyperCommand):
    """`retrain`, whose help lists every setting of RetrainSettings, read when the help is shown:
    importing the settings loads pandas and the scheduler, which `forecaster --help` does not need."""

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        from pipelines.settings import RetrainSettings, flag_of

        lines = settings_help(RetrainSettings).splitlines()  # each '--setting-name  description'
        renamed = {"--" + name.replace("_", "-"): flag_of(name) for name in RetrainSettings.model_fields}
        self.help = RETRAIN_HELP + "\n\n".join(_renamed(line, renamed) for line in lines)
        super().format_help(ctx, formatter)


def _renamed(line: str, flags: dict[str, str]) -> str:
    flag, gap, rest = line.partition("  ")
    return flags.get(flag, flag) + gap + rest


def register(app: typer.Typer) -> None:
    @app.command(
        cls=RetrainCommand,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        help=RETRAIN_HELP,
    )
    @friendly_errors
    def retrain(
        ctx: typer.Context,
        config: Annotated[str | None, typer.Option(help="YAML settings, e.g. pipelines/retrain.yaml")] = None,
        once: Annotated[bool, typer.Option("--once", help="Run once now even if the config has a schedule")] = False,
        max_runs: Annotated[int | None, typer.Option(help="Stop the scheduler after N runs")] = None,
        print_config: Annotated[
            bool, typer.Option("--print-config", help="Print the resolved settings as YAML and exit")
        ] = False,
    ) -> None:
        from forecaster.registry.tracking import redact
        from pipelines.retrain import run_locked
        from pipelines.schedule import run_on_schedule
        from pipelines.settings import load_settings

        settings = load_settings(config, list(ctx.args))
        if print_config:
            values = settings.model_dump(mode="json")
            for key in ("tracking_uri", "lock_database_url"):
                values[key] = redact(values[key]) if values[key] else values[key]
            typer.echo(to_yaml(values), nl=False)
            return
        setup_logging(verbose=True)
        logging.getLogger("pipelines").setLevel(logging.INFO)
        if settings.schedule and not once:
            run_on_schedule(
                lambda: run_locked(settings), settings.schedule, settings.timezone, max_runs, settings.run_on_start
            )
            return
        report = run_locked(settings)
        if report is None:
            typer.echo('{"skipped": true}')
            return
        typer.echo(
            json.dumps(
                {
                    "run_id": report.run_id,
                    "version": report.version,
                    "promoted": report.decision.promote,
                    "reason": report.decision.reason,
                    "champion_before": report.champion_before,
                    "champion_after": report.champion_after,
                    "baseline_version": report.baseline_version,
                }
            )
        )

    @app.command()
    @friendly_errors
    def rollback(
        model: Annotated[str, typer.Option(help="Registered model name")],
        tracking_uri: Annotated[str | None, typer.Option()] = None,
        config: Annotated[
            str | None, typer.Option(help="YAML settings of the retrain (its lock settings are used)")
        ] = None,
    ) -> None:
        """Move `champion` back to the `previous` version, holding the retraining lock (waits at most
        `rollback_wait_s` for a running retrain; the lock comes from the retrain's settings)."""
        from pipelines.retrain import rollback_locked
        from pipelines.settings import load_settings

        setup_logging()
        flags = ["--model", model, *(["--tracking-uri", tracking_uri] if tracking_uri else [])]
        old, new = rollback_locked(load_settings(config, flags))
        typer.echo(f"{model}: champion {old} -> {new}")
