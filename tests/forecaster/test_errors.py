"""Errors for a person: one line, every secret hidden. `redact` hides URI passwords (even ones
holding '@'), libpq password=... pairs and secret query parameters; a caller that knows the
password hides every piece of it a driver may quote."""

from __future__ import annotations

import pytest

from forecaster.errors import redact, uri_secrets
from pipelines.lock import LockTarget, pipeline_lock

URI = "postgresql://user:topsecret@pw@127.0.0.1:5439/x"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (URI, "postgresql://user:***@127.0.0.1:5439/x"),
        ("http://mlflow:5000/api?token=abc123&x=1&api_key=zz", "http://mlflow:5000/api?token=***&x=1&api_key=***"),
        ("s3://bucket/k?X-Amz-Signature=f00d&y=2", "s3://bucket/k?X-Amz-Signature=***&y=2"),
        ("host=db user=mlflow password=s3cret dbname=x", "host=db user=mlflow password=*** dbname=x"),
        ("a https://:s3cret@host/ and http://u:p4ss@h:1/x", "a https://:***@host/ and http://u:***@h:1/x"),
    ],
)
def test_redact_hides_every_form_of_password(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "untouched", ["sqlite:////tmp/x/mlflow.db", "http://host:80/path?page=2", "mailto:x@y", "https://a/b?c=d@e"]
)
def test_redact_leaves_text_without_secrets_alone(untouched: str) -> None:
    assert redact(untouched) == untouched


def test_known_password_pieces_are_hidden_as_whole_tokens_only() -> None:
    message = 'could not translate host name "pw@127.0.0.1" to address (pwd: topsecret)'
    assert uri_secrets(URI) == ("topsecret@pw",)
    assert redact(message, uri_secrets(URI)) == 'could not translate host name "***@127.0.0.1" to address (pwd: ***)'


def test_the_lock_database_error_shows_no_piece_of_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg2

    def misread(dsn: str, **kwargs: object) -> None:  # what libpq answers for that URL
        raise psycopg2.OperationalError('could not translate host name "pw@127.0.0.1" to address: unknown')

    monkeypatch.setattr(psycopg2, "connect", misread)
    with pytest.raises(Exception, match="lock_database_url") as caught, pipeline_lock("m", LockTarget(URI), 0):
        pass
    text = str(caught.value)
    assert "topsecret" not in text and "pw@" not in text and "***@127.0.0.1" in text
