"""Errors the library raises on purpose, and how any error is written for a person: on one line,
with every password redacted. Callers map the classes to messages or HTTP codes. Imports nothing
of the package (and no MLflow), so the service's logs and every command can use it."""

from __future__ import annotations

import re

from pydantic import ValidationError


class ForecasterError(Exception):
    """Base class of every error that names what is wrong with an input."""


class DataError(ForecasterError, ValueError):
    """Input data is malformed: names the field, the ticker and the date."""


class SourceError(ForecasterError):
    """A data source (file, yfinance) could not deliver what was asked."""


class ModelNotFoundError(ForecasterError):
    """A model URI, name, alias or version does not resolve in the registry."""


class RegistryUnavailableError(ForecasterError):
    """The tracking server or registry cannot be reached."""


class ModelLoadError(ForecasterError):
    """A registered model version resolves, but its artifact cannot be loaded (corrupt or missing
    files, unreadable config, unsupported format): names the model, the version and the cause."""


# Credentials inside any text: the userinfo password of a URI (scheme://user:PASSWORD@host; the
# password runs to the LAST @ before the host, so "pa@ss" is hidden whole), also inside exception
# messages that quote a URL (MLflow's "API request to http://user:pw@..."); libpq-style
# "password=..." pairs; and query parameters that carry a secret (?token=..., &api_key=...).
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):(?P<password>[^\s/]*)@(?=[^\s@/]*)")
_KEY_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>[^\s&;,'\"]+)", re.IGNORECASE)
SECRET_PARAMETERS = ("token", "password", "passwd", "pwd", "secret", "api_key", "apikey", "key", "signature", "sig")
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:[A-Za-z0-9_-]*[_-])?(?:" + "|".join(SECRET_PARAMETERS) + r")=)(?P<secret>[^&;#\s'\"]+)",
    re.IGNORECASE,
)
MIN_SECRET_PART = 2  # pieces of a password shorter than this are not searched for on their own


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """A URI or any message fit for logs and responses: every password in it replaced by ***.
    `secrets`: passwords known to the caller (`uri_secrets` of the URI it used), hidden wherever
    they (or their @-separated pieces) appear: a driver may quote a piece of a password it misread
    as the host ("pw@127.0.0.1")."""
    text = _URI_PASSWORD.sub(r"\g<head>:***@", text)
    text = _KEY_PASSWORD.sub(r"\g<head>***", text)
    text = _QUERY_SECRET.sub(r"\g<head>***", text)
    pieces = {part for secret in secrets for part in (secret, *secret.split("@")) if len(part) >= MIN_SECRET_PART}
    for piece in sorted(pieces, key=len, reverse=True):  # whole tokens only: "pw" in "pw@host", not in "pwd"
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(piece)}(?![A-Za-z0-9])", "***", text)
    return text


def uri_secrets(uri: str) -> tuple[str, ...]:
    """The password of a URI (scheme://user:PASSWORD@host), for `redact(text, secrets)`."""
    found = _URI_PASSWORD.search(uri)
    return (found.group("password"),) if found and found.group("password") else ()


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """An error as one line for a person, passwords redacted: pydantic's multi-line report becomes
    'field: message (got X)'; an error without text is named by its type; cut at `limit`
    characters when given (store errors carry driver output and whole SQL statements)."""
    if isinstance(exc, ValidationError):
        text = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
    else:
        text = " ".join(str(exc).split()) or type(exc).__name__
    text = redact(text)
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."
