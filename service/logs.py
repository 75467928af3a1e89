"""Service log lines: text or JSON, passwords scrubbed from every line, and the per-request
context (request id, series count) that the access-log line reports."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from forecaster.errors import redact

ACCESS_LOGGER = "service.access"
# Loggers whose lines the service prints; uvicorn prints its own (startup, shutdown) itself.
APP_LOGGERS = ("service", "forecaster")
# Fields an access-log record carries beside its message (also the JSON keys).
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "series", "request_id")


@dataclass
class RequestContext:
    """What one request's access-log line reports beyond method, path and status."""

    request_id: str
    series: int | None = None


current_request: ContextVar[RequestContext | None] = ContextVar("current_request", default=None)


def note_series(count: int) -> None:
    """Record the series count of the request being served (no-op outside a request)."""
    context = current_request.get()
    if context is not None:
        context.series = count


class TextFormatter(logging.Formatter):
    """`time level logger: message` with every password in the line (traceback included) scrubbed."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the access fields when present,
    and the traceback as `exc`; scrubbed like the text format."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ACCESS_FIELDS:
            if key in record.__dict__:
                entry[key] = record.__dict__[key]
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


class _ServiceHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each line (as logging's last-resort
    handler does), and marks the handler this module installed so configuring again replaces it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def configure_logging(log_format: str = "text", level: str = "info") -> None:
    """Print the service's and the library's log lines to stderr in `log_format`. Idempotent:
    every app instance calls it, the root logger is left alone (pytest's capture lives there)."""
    handler = _ServiceHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    for name in APP_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _ServiceHandler)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level.upper())  # still propagates: pytest's capture on the root sees every line
