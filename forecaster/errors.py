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


# Credentials inside any text: the userinfo password of a URI (scheme://user:PASSWORD@host),
# also inside exception messages that quote a URL (MLflow's "API request to http://user:pw@..."),
# and libpq-style "password=..." pairs.
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):(?P<password>[^\s@/]+)@")
_KEY_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>[^\s&;,'\"]+)", re.IGNORECASE)


def redact(text: str) -> str:
    """A URI or any message fit for logs and responses: every password in it replaced by ***."""
    text = _URI_PASSWORD.sub(r"\g<head>:***@", text)
    return _KEY_PASSWORD.sub(r"\g<head>***", text)


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
