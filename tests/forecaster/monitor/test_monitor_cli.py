"""`forecaster monitor score` and `report` from the command line: what they print, and one line
(exit 2, no trace, no password) for what a user gets wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ledger_cases import bars, ledger
from typer.testing import CliRunner

from forecaster.interface.cli import app
from forecaster.monitor.store import LedgerStore


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    output = " ".join(result.output.split())
    assert "Traceback" not in output
    return result.exit_code, output


@pytest.fixture()
def ledgered(tmp_path: Path) -> tuple[str, Path]:
    """A SQLite ledger of served forecasts and the CSV of the bars that followed them."""
    frame = bars()
    uri = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = LedgerStore(uri)
    store.append([r.row() for r in ledger(frame)])
    store.close()
    path = tmp_path / "bars.csv"
    frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    return uri, path


def test_score_scores_what_is_due_once_and_reads_the_ledger_uri_from_the_environment(
    ledgered: tuple[str, Path],
) -> None:
    uri, path = ledgered
    code, output = invoke("monitor", "score", "--data", str(path), "--ledger-uri", uri, "--json")
    assert code == 0, output
    first = json.loads(output)
    assert first["scored"] > 0 and first["scored"] == first["resolved"] and first["unmatched"] == 4
    assert first["data"] == str(path.resolve()) and first["last_bar"] == "2024-04-19"
    code, output = invoke("monitor", "score", "--data", str(path), env={"FORECASTER_LEDGER_URI": uri})
    assert code == 0, output
    assert f"0 forecast steps scored against {path.resolve()}" in output
    assert f"{first['resolved']} resolved, {first['pending']} pending" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--ledger-uri", "postgresql://me:hunter2@127.0.0.1:9/ledger"),
            "error: ledger postgresql+psycopg2://me:***@127.0.0.1:9/ledger: creating the schema failed:",
        ),
        (("--ledger-uri", "mysql://db/x"), "error: ledger: 'mysql://db/x' is neither SQLite nor PostgreSQL"),
        (("--bad-rows", "maybe"), "error: --bad-rows: expected 'fail' or 'drop', got 'maybe'"),
        (("--source", "sample"), "error: --source: the bundled sample ended long before any forecast was served"),
    ],
)
def test_score_refuses_bad_input_in_one_line(ledgered: tuple[str, Path], args: tuple[str, ...], message: str) -> None:
    uri, path = ledgered
    code, output = invoke("monitor", "score", "--data", str(path), "--ledger-uri", uri, *args)
    assert code == 2 and output.startswith(message), output
    assert "hunter2" not in output


def test_score_names_a_bad_bar_of_the_data(ledgered: tuple[str, Path]) -> None:
    uri, path = ledgered
    text = path.read_text().splitlines()
    text[5] = text[5].replace(text[5].split(",")[2], "-1", 1)  # a negative open
    path.write_text("\n".join(text) + "\n")
    code, output = invoke("monitor", "score", "--data", str(path), "--ledger-uri", uri)
    assert code == 2 and output.startswith("error: ") and "AAA" in output, output


def test_report_prints_strict_json_and_a_table_per_version_and_step(ledgered: tuple[str, Path]) -> None:
    uri, path = ledgered
    assert invoke("monitor", "score", "--data", str(path), "--ledger-uri", uri)[0] == 0
    code, output = invoke("monitor", "report", "--ledger-uri", uri, "--json")
    assert code == 0, output
    report = json.loads(output, parse_constant=lambda name: pytest.fail(f"not strict JSON: {name}"))
    steps = [(g["version"], g["step"], g["served"]) for g in report["groups"]]
    assert steps == [("1", 1, 1), ("1", 1, 17), ("1", 2, 1), ("1", 2, 17), ("1", 3, 15)]
    result = CliRunner().invoke(app, ["monitor", "report", "--ledger-uri", uri], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "MAE/naive" in line)
    for column in ("served", "resolved", "cov 90%", "cov 80%", "cov 50%", "SPL/EWMA", "DM p naive", "DM p EWMA"):
        assert column in header
    assert sum(line.count("│ m ") for line in result.output.splitlines()) == 5


def test_report_of_an_unknown_model_says_so_and_a_bad_date_is_one_line(ledgered: tuple[str, Path]) -> None:
    uri, _ = ledgered
    assert invoke("monitor", "report", "--ledger-uri", uri, "--model", "nope") == (
        0,
        f"ledger {uri}: no forecasts of model nope",
    )
    code, output = invoke("monitor", "report", "--ledger-uri", uri, "--since", "2024-02-30")
    assert code == 2 and output.startswith("error: --since:"), output
