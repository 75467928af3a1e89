"""/docs, /redoc and / as a person sees them.

The browser tests render each page in a real headless browser (Debian's `chromium`, installed by
.ci/run) that may reach no host but 127.0.0.1, so a page that needs a CDN, or a Swagger UI that
cannot read OpenAPI 3.1 ("Unable to render this definition"), fails here. Where no browser is
installed they skip and say so. The other tests read the pages' HTML over plain HTTP.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.pages import render_landing

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline: only this machine answers
    # Virtual time runs only while the page is idle (no fetch pending), so 10 virtual seconds let
    # the scripts fetch /openapi.json or /forecast and render, however slow the machine is.
    "--virtual-time-budget=10000",
)
BROWSER_TIMEOUT_S = 120  # wall clock, for a stuck browser only
PAGES = ("/", "/docs", "/redoc", "/docs/oauth2-redirect")
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # an XML name the landing page's script uses, not fetched


@pytest.fixture(scope="module")
def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.skip("no headless browser installed (apt-get install -y chromium): pages not rendered")


def rendered(browser: str, client: httpx.Client, path: str, profile: Path) -> str:
    """The DOM of `path` after the browser ran its scripts (what a person would see)."""
    url = f"{client.base_url}{path}"
    result = subprocess.run(
        [browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<body" in result.stdout, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def spec(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_docs_render_every_operation_in_a_browser_offline(browser, client, spec, tmp_path):
    assert spec["openapi"].startswith("3.1")
    dom = rendered(browser, client, "/docs", tmp_path)
    assert "Unable to render this definition" not in dom
    assert "OAS 3.1" in dom  # Swagger UI 5 read the document as OpenAPI 3.1
    shown = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert "/forecast" in shown
    assert shown == set(spec["paths"])


def test_redoc_renders_the_same_document_in_a_browser_offline(browser, client, spec, tmp_path):
    dom = rendered(browser, client, "/redoc", tmp_path)
    assert "Something went wrong" not in dom  # ReDoc's own error page
    assert f"{spec['info']['title']} <span>({spec['info']['version']})" in dom
    assert 'id="tag/forecast/operation/' in dom
    for path in spec["paths"]:
        assert f">{path}<" in dom, path


def test_landing_page_draws_a_fan_chart_of_a_ticker_in_a_browser(browser, client, registry, tmp_path):
    dom = rendered(browser, client, "/?ticker=aaa", tmp_path)
    answer = client.post("/forecast", json={"ticker": "AAA"}).json()
    levels = answer["levels"]
    assert dom.count('class="band"') == len(levels) // 2  # one band per pair of quantile levels
    assert dom.count('class="median"') == 1
    caption = re.search(r'<p class="caption">([^<]+)</p>', dom)
    assert caption is not None, dom[-3000:]
    assert caption.group(1).startswith("AAA (file), as of 2023-12-22, model svc version 1: ")
    assert f"from the {levels[0]} to the {levels[-1]} quantile" in caption.group(1)
    assert f"{registry.horizon} sessions ahead" in caption.group(1)


def test_landing_page_shows_a_bad_ticker_error_in_a_browser(browser, client, tmp_path):
    dom = rendered(browser, client, "/?ticker=ZZZ", tmp_path)
    assert "422: ticker: ticker 'ZZZ' is not in the service's data source (file)" in dom
    assert 'class="band"' not in dom


def test_landing_page_names_the_served_model_and_links_every_surface(client, registry):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    ready = client.get("/ready").json()
    for row, value in (
        ("model", f"<code>{registry.model}</code>"),
        ("alias", "<code>champion</code>"),
        ("version", f'<span class="ok">{ready["version"]}</span>'),
        ("run", f"<code>{registry.run.run_id}</code>"),
        ("window", f"lookback {registry.lookback}, horizon {registry.horizon}"),
        ("registry", "up"),
    ):
        assert f"<tr><th>{row}</th><td>{value}</td></tr>" in page, row
    links = re.findall(r'<a href="([^"]+)">', page)
    assert set(links) == {"docs", "redoc", "openapi.json", "models", "health", "ready", "metrics"}
    for link in links:  # relative, so they also work behind a proxy's path prefix
        assert client.get(f"/{link}").status_code == 200, link


class UnloadedStore:
    """The model store as the landing page reads it, before the default model has loaded."""

    models: dict[Any, Any] = {}
    default_key = ("<b>m&m</b>", "alias", "champion")
    default_error = "registry: <unavailable>"
    registry_up = False


def test_landing_page_says_why_the_model_is_not_loaded_in_escaped_words(registry):
    page = render_landing(registry.settings(model_name="<b>m&m</b>"), UnloadedStore())  # type: ignore[arg-type]
    assert "<code>&lt;b&gt;m&amp;m&lt;/b&gt;</code>" in page
    assert '<span class="bad">not loaded: registry: &lt;unavailable&gt;</span>' in page
    assert "<tr><th>registry</th><td>down</td></tr>" in page
    assert "<b>m&m</b>" not in page and "<unavailable>" not in page


@pytest.mark.parametrize("path", PAGES)
def test_pages_use_only_local_assets_and_serve_them(client, path):
    response = client.get(path)
    assert response.status_code == 200, path
    html = response.text
    assert re.findall(r"https?://|//[a-z]", html.replace(SVG_NAMESPACE, "")) == []  # no CDN: works offline
    assets = re.findall(r'src="([^"]+)"', html) + re.findall(r'<link [^>]*href="([^"]+)"', html)
    for asset in assets:  # scripts, styles, icons: each from this service
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert len(answer.content) > 100, asset


def test_docs_and_redoc_load_their_bundles_and_the_service_document(client):
    docs, redoc = client.get("/docs").text, client.get("/redoc").text
    assert re.search(r'src="/docs/assets/swagger-ui-bundle\.js"', docs)
    assert re.search(r'href="/docs/assets/swagger-ui\.css"', docs)
    assert "url: '/openapi.json'" in docs
    assert re.search(r'src="/docs/assets/redoc\.standalone\.js"', redoc)
    assert '<redoc spec-url="/openapi.json">' in redoc
