"""The forecast ledger of a running service: every answered forecast recorded, exactly as answered,
under concurrent requests; a ledger that is down, stuck or full never fails or holds a request,
and what it could not record is counted on /metrics."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from ledger_db import KINDS, ledger_database
from pydantic import ValidationError

from forecaster.errors import one_line
from forecaster.monitor.schema import fingerprint, forecasts
from forecaster.monitor.store import LedgerStore
from service.ledger import Ledger, LedgerMetrics, NoLedger
from service.main import create_app
from service.settings import Settings


def metric(client: Any, name: str, labels: str = "") -> float:
    """One sample of /metrics (0.0 when absent)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{labels} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def request_bodies(registry: Any) -> list[dict[str, Any]]:
    """Every request shape: one history, one ticker, several series (sent and by ticker, with ids),
    a shorter horizon; the same history twice (same fingerprint, different requests)."""
    bodies: list[dict[str, Any]] = []
    for i, ticker in enumerate(("AAA", "BBB", "CCC") * 4):
        history = registry.history(ticker, 25 + i)
        bodies += [
            {"history": history},
            {"ticker": ticker, "horizon": 1 + i % registry.horizon},
            {"series": [{"id": f"mine-{i}", "history": history}, {"ticker": ticker}, {"id": "t", "ticker": "AAA"}]},
        ]
    return bodies


def post_all(client: Any, bodies: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(request id, answer) of every body, sent by 8 threads at once."""

    def post(item: tuple[int, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        index, body = item
        response = client.post("/forecast", json=body, headers={"X-Request-ID": f"req-{index}"})
        assert response.status_code == 200, response.text
        return response.headers["x-request-id"], response.json()

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(post, enumerate(bodies)))


def ledger_rows(uri: str) -> list[dict[str, Any]]:
    store = LedgerStore(uri)
    try:
        with store.connect("reading") as connection:
            return [dict(row._mapping) for row in connection.execute(sa.select(forecasts).order_by(forecasts.c.id))]
    finally:
        store.close()


@pytest.mark.parametrize("kind", KINDS)
def test_the_ledger_holds_exactly_the_forecasts_answered_under_concurrent_requests(
    kind: str, registry: Any, serve_built: Any, tmp_path: Path
) -> None:
    bodies = request_bodies(registry)
    with ledger_database(kind, tmp_path) as uri:
        app = create_app(registry.settings(ledger_uri=uri))
        with serve_built(app) as client:
            answers = post_all(client, bodies)
            assert app.state.ledger.flush()
            written = metric(client, "forecaster_ledger_written_total")
            dropped = metric(client, "forecaster_ledger_dropped_total", '{reason="queue_full"}')
        rows = ledger_rows(uri)

    served = {(request_id, f["id"]): (answer, f) for request_id, answer in answers for f in answer["forecasts"]}
    assert written == len(served) and dropped == 0
    assert len(rows) == len(served)  # one row per series forecast
    by_key = {(row["request_id"], row["series_id"]): row for row in rows}
    assert by_key.keys() == served.keys()
    bodies_by_id = {f"req-{i}": body for i, body in enumerate(bodies)}
    for key, (answer, forecast) in served.items():
        row = by_key[key]
        assert row["horizon"] == len(forecast["points"])
        assert row["target_dates"] == [p["date"] for p in forecast["points"]]
        assert (row["first_target"].isoformat(), row["last_target"].isoformat()) == (
            forecast["points"][0]["date"],
            forecast["points"][-1]["date"],
        )
        assert row["quantiles"] == [p["quantiles"] for p in forecast["points"]]  # exactly
        assert (row["model"], row["version"], row["alias"], row["run_id"]) == tuple(answer["model"].values())
        assert row["levels"] == answer["levels"]
        assert row["as_of"].isoformat() == forecast["as_of"] and row["source"] == forecast["source"]
        assert (row["origin"], row["role"]) == ("service", "served")
        sent = sent_history(bodies_by_id[key[0]], key[1])
        if sent is None:  # a ticker of the service's file
            assert row["ticker"] is not None and forecast["source"] == "file"
        else:  # the model's input is the last lookback bars sent, as float32
            window = np.array([[b["open"], b["high"], b["low"], b["close"]] for b in sent[-registry.lookback :]])
            assert row["ticker"] is None
            assert row["fingerprint"] == fingerprint(window.astype(np.float32))
            assert row["last_close"] == float(np.float32(sent[-1]["close"]))


def sent_history(body: dict[str, Any], series_id: str) -> list[dict[str, Any]] | None:
    if "history" in body:
        return body["history"]
    for index, item in enumerate(body.get("series", [])):
        if item.get("id", item.get("ticker", str(index))) == series_id:
            return item.get("history")
    return None


@pytest.mark.parametrize("outage", ["unwritable-file", "unreachable-postgresql"])
def test_a_ledger_outage_never_fails_a_request_and_counts_what_it_dropped(
    outage: str, registry: Any, serve_built: Any, tmp_path: Path, history: list[dict[str, Any]], baseline: Any
) -> None:
    if outage == "unwritable-file":
        (tmp_path / "a-file").write_text("not a folder")
        uri = f"sqlite:///{tmp_path / 'a-file' / 'ledger.db'}"
    else:
        uri = "postgresql://postgres:secret@127.0.0.1:9/test"  # discard port: nothing listens there
    app = create_app(registry.settings(ledger_uri=uri))
    with serve_built(app) as client:
        for _ in range(3):
            response = client.post("/forecast", json={"series": [{"history": history}, {"ticker": "BBB"}]})
            assert response.status_code == 200, response.text
            assert response.json()["forecasts"][0]["points"] == baseline["forecasts"][0]["points"]
        assert app.state.ledger.flush()
        assert metric(client, "forecaster_ledger_dropped_total", '{reason="store_error"}') == 6
        assert metric(client, "forecaster_ledger_written_total") == 0
        assert client.get("/ready").status_code == 200


def test_a_stuck_ledger_holds_no_request_and_a_full_queue_drops_and_counts(
    registry: Any, serve_built: Any, tmp_path: Path, history: list[dict[str, Any]]
) -> None:
    app = create_app(registry.settings(ledger_uri=f"sqlite:///{tmp_path / 'ledger.db'}"))
    release = threading.Event()
    with serve_built(app) as client:
        ledger = app.state.ledger
        append = ledger.store.append

        def stuck(rows: list[dict[str, Any]]) -> int:
            assert release.wait(30)
            return append(rows)

        ledger.store.append = stuck
        ledger.capacity = 2
        try:
            for _ in range(4):  # answered while the store is stuck: two queued, two over capacity
                assert client.post("/forecast", json={"history": history}).status_code == 200
            assert metric(client, "forecaster_ledger_dropped_total", '{reason="queue_full"}') == 2
        finally:
            release.set()
        assert ledger.flush()
        assert metric(client, "forecaster_ledger_written_total") == 2
    assert len(ledger_rows(f"sqlite:///{tmp_path / 'ledger.db'}")) == 2


def test_ledger_off_records_nothing(registry: Any, serve_built: Any, tmp_path: Path, history: Any) -> None:
    app = create_app(registry.settings(ledger="off", ledger_uri=f"sqlite:///{tmp_path / 'ledger.db'}"))
    with serve_built(app) as client:
        assert client.post("/forecast", json={"history": history}).status_code == 200
        assert isinstance(app.state.ledger, NoLedger)
    assert not (tmp_path / "ledger.db").exists()


def test_the_default_ledger_is_a_sqlite_file_beside_the_mlflow_store(registry: Any, serve_built: Any) -> None:
    app = create_app(registry.settings())
    with serve_built(app):
        ledger = app.state.ledger
        assert isinstance(ledger, Ledger)
        assert ledger.store.uri == f"sqlite:///{(registry.root / 'ledger.db').resolve()}"


@pytest.mark.parametrize("uri", ["mysql://user:secret@db/x", "not a uri"])
def test_settings_refuse_a_ledger_uri_it_cannot_use(uri: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(ledger_uri=uri)
    line = one_line(raised.value)  # how `forecaster serve` reports a bad setting
    assert line.startswith("ledger_uri: ") and "FORECASTER_LEDGER_URI" in line and "secret" not in line


def test_the_writer_survives_a_failing_batch_and_writes_the_next(tmp_path: Path) -> None:
    """A unit test of the queue: the first batch fails (counted), the next is written."""
    from prometheus_client import CollectorRegistry

    store = LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    calls: list[int] = []
    append = store.append

    def flaky(rows: list[dict[str, Any]]) -> int:
        calls.append(len(rows))
        if len(calls) == 1:
            raise OSError("disk full")
        return append(rows)

    store.append = flaky  # type: ignore[method-assign]
    metrics = LedgerMetrics(CollectorRegistry())
    ledger = Ledger(store, metrics)
    content, series, windows = one_answer()
    ledger.record(content, series, windows)
    assert ledger.flush()
    ledger.record(content, series, windows)
    ledger.close()
    assert metrics.dropped.labels("store_error")._value.get() == 1
    assert metrics.written._value.get() == 1
    assert calls == [1, 1]


def test_the_writer_carries_the_answers_of_one_linger_in_one_transaction(tmp_path: Path) -> None:
    """Answers queued while the writer lingers go in one append; a flush or a full batch ends the linger."""
    from prometheus_client import CollectorRegistry

    store = LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    calls: list[int] = []
    append = store.append
    writing = threading.Event()

    def counted(rows: list[dict[str, Any]]) -> int:
        calls.append(len(rows))
        writing.set()
        return append(rows)

    store.append = counted  # type: ignore[method-assign]
    metrics = LedgerMetrics(CollectorRegistry())
    ledger = Ledger(store, metrics, linger=3600.0)  # only a flush or a full batch ends this linger
    content, series, windows = one_answer()
    for _ in range(5):
        ledger.record(content, series, windows)
    assert not writing.wait(0.2)  # lingering: nothing written one answer at a time
    assert ledger.flush()
    assert calls == [5]
    writing.clear()
    ledger.batch = 3
    for _ in range(3):
        ledger.record(content, series, windows)
    assert writing.wait(30)  # the third answer filled the batch: written without a flush
    ledger.close()
    assert calls == [5, 3] and metrics.written._value.get() == 8
    assert len(ledger_rows(store.uri)) == 8


def one_answer() -> tuple[dict[str, Any], list[Any], list[Any]]:
    """A one-series answer as the route hands it to the ledger (two steps)."""
    import datetime as dt

    from forecaster.model.predictor import Window
    from service.fastpath import SeriesBody

    window = np.full((4, 4), 10.0, dtype=np.float32)
    content = {
        "model": {"name": "m", "version": "3", "alias": "champion", "run_id": "r"},
        "device": "cpu",
        "levels": [0.1, 0.5, 0.9],
        "forecasts": [
            {
                "id": "s",
                "source": "request",
                "as_of": "2024-01-05",
                "stale": False,
                "points": [
                    {"step": h, "date": day, "close": 10.0, "lower": low, "upper": high, "quantiles": [low, 10.0, high]}
                    for h, day, low, high in ((1, "2024-01-08", 9.0, 11.0), (2, "2024-01-09", 8.0, 12.0))
                ],
            }
        ],
    }
    return content, [SeriesBody("s", "", window, dt.date(2024, 1, 5))], [Window(window, dt.date(2024, 1, 5))]
