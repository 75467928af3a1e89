"""The service's HTML pages: `/`, a landing page (the served model, links to every surface, a
forecast fan chart), and where Swagger UI and ReDoc take their files from.

/docs and /redoc themselves are fastapi-offline's (`service.main` builds the app with it): Swagger
UI 5, which reads the OpenAPI 3.1 document FastAPI writes, and ReDoc, both from files inside that
package, so no page here names another host. The landing page is one self-contained document,
landing.html (style and script inline): its chart draws an SVG from the service's own POST /forecast.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources
from string import Template

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from forecaster import __version__
from service.deps import SettingsDep, StoreDep
from service.settings import Settings

DOCS_ASSETS = "/docs/assets"  # Swagger UI's and ReDoc's files, mounted by fastapi-offline
LINKS = (
    ("/docs", "API docs", "Swagger UI: every route, its schema and examples, with Try it out"),
    ("/redoc", "ReDoc", "the same OpenAPI document as a readable reference"),
    ("/openapi.json", "OpenAPI", "the document itself (OpenAPI 3.1)"),
    ("/models", "Models", "every loaded model: version, run, lookback, horizon, quantiles"),
    ("/health", "Health", "the process is alive"),
    ("/ready", "Ready", "the default model is loaded and answers (503 until then)"),
    ("/metrics", "Metrics", "Prometheus: requests, latency, batches, model versions"),
)

router = APIRouter(include_in_schema=False)


@cache
def page_template() -> Template:
    """landing.html, read once: its $-placeholders are filled per request."""
    return Template(resources.files("service").joinpath("landing.html").read_text(encoding="utf-8"))


def _row(name: str, value: str) -> str:
    return f"<tr><th>{html.escape(name)}</th><td>{value}</td></tr>"


def model_section(settings: Settings, store: StoreDep) -> str:  # the model store, typed as routes get it
    """The default model as the store holds it now: version, run, shape, or why it is not loaded."""
    loaded = store.models.get(store.default_key)
    rows = [
        _row("model", f"<code>{html.escape(store.default_key[0])}</code>"),  # a name, or the fixed reference
        _row("alias", f"<code>{html.escape(settings.alias if settings.model_uri is None else '- (fixed)')}</code>"),
    ]
    if loaded is None:
        reason = store.default_error or "still loading"
        rows.append(_row("version", f'<span class="bad">not loaded: {html.escape(reason)}</span>'))
    else:
        config = loaded.forecaster.bundle.model_config
        rows += [
            _row("version", f'<span class="ok">{html.escape(loaded.ref.version or "not registered")}</span>'),
            _row("run", f"<code>{html.escape(loaded.ref.run_id or '-')}</code>"),
            _row("network", html.escape(f"{config.arch}, {config.mode}, quantiles {list(config.quantiles)}")),
            _row("window", html.escape(f"lookback {loaded.forecaster.lookback}, horizon {loaded.forecaster.horizon}")),
            _row("loaded", html.escape(f"{loaded.loaded_at:%Y-%m-%d %H:%M:%S} UTC on {loaded.forecaster.device}")),
        ]
    registry = {None: "not asked yet", True: "up", False: "down"}[store.registry_up]
    rows.append(_row("registry", html.escape(registry)))
    others = sorted(store.label(key) for key in store.models if key != store.default_key)
    if others:
        rows.append(_row("also loaded", html.escape(", ".join(others))))
    return f"<table>{''.join(rows)}</table>"


def render_landing(settings: Settings, store: StoreDep) -> str:
    links = "".join(
        f'<li><a href="{path.lstrip("/")}">{html.escape(label)}</a> <code>{path}</code>'
        f'<span class="desc">{html.escape(desc)}</span></li>'
        for path, label, desc in LINKS
    )
    key_input = (
        '<label>X-API-Key <input name="key" type="password" autocomplete="off"></label>'
        if settings.api_key is not None
        else ""
    )
    return page_template().substitute(
        version=html.escape(__version__),
        model=model_section(settings, store),
        links=links,
        key_input=key_input,
        source=html.escape(settings.data_source),
    )


@router.get("/", response_class=HTMLResponse)
async def landing(settings: SettingsDep, store: StoreDep) -> HTMLResponse:
    """The landing page: what this service serves and where to go from here."""
    return HTMLResponse(render_landing(settings, store))
