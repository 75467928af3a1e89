"""forecaster.registry.references: every form of model reference MLflow's loader takes is read apart
from its text alone; anything else is one error naming the reference and the accepted forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from forecaster.errors import ModelNotFoundError
from forecaster.registry.references import parse_reference
from forecaster.registry.tracking import parse_model_uri


def test_registered_versions_by_alias_and_number() -> None:
    alias = parse_reference("models:/prices@champion")
    assert (alias.kind, alias.name, alias.alias, alias.version) == ("alias", "prices", "champion", None)
    version = parse_reference("models:/prices/3")
    assert (version.kind, version.name, version.alias, version.version) == ("version", "prices", None, "3")
    assert parse_model_uri("models:/prices@champion") == ("prices", "champion", None)


def test_logged_models_runs_and_folders() -> None:
    logged = parse_reference("models:/m-97bfe8f922a54e2f926b20b59914fb70")
    assert (logged.kind, logged.model_id) == ("logged", "m-97bfe8f922a54e2f926b20b59914fb70")
    run = parse_reference("runs:/480add62/model")
    assert (run.kind, run.run_id, run.artifact_path) == ("run", "480add62", "model")
    nested = parse_reference("runs:/480add62/model/artifacts/bundle/")
    assert nested.artifact_path == "model/artifacts/bundle"
    assert parse_reference("saved/model").path == Path("saved/model")
    assert parse_reference("/tmp/a%20b").path == Path("/tmp/a%20b")  # a path is taken as written
    assert parse_reference("file:///tmp/a%20b").path == Path("/tmp/a b")  # a URI is unquoted


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/prices", "'models:/prices' names no alias or version (use models:/prices@ALIAS"),
        ("models:/", "expected models:/NAME@ALIAS, models:/NAME/VERSION, models:/m-<id>, runs:/<run_id>/model"),
        ("models:/a/b/3", "got 'models:/a/b/3'"),
        ("models:/@champion", "got 'models:/@champion'"),
        ("runs:/abc", "'runs:/abc' names no model folder of the run (use runs:/<run_id>/model)"),
        ("s3://bucket/model", "got 's3://bucket/model'"),
        ("", "got ''"),
    ],
)
def test_other_text_is_refused_naming_it_and_the_forms(uri: str, message: str) -> None:
    with pytest.raises(ModelNotFoundError, match="^model_uri: ") as caught:
        parse_reference(uri)
    assert message in str(caught.value)


def test_parse_model_uri_names_only_registered_versions() -> None:
    with pytest.raises(ModelNotFoundError, match="expected models:/NAME@ALIAS or models:/NAME/VERSION"):
        parse_model_uri("runs:/abc/model")
