"""The one retry policy of a failing source: every caller (CLI, service, retraining pipeline)
hands its retry settings down to it instead of looping around a source on its own."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from forecaster.errors import SourceError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How a source that failed (a SourceError) is asked again: ``attempts`` tries in all, the
    n-th failure followed by a wait of ``backoff_s * 2 ** (n - 1)`` seconds through ``sleep``."""

    attempts: int = 4
    backoff_s: float = 1.0
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"attempts: expected an integer >= 1, got {self.attempts!r}")
        if not self.backoff_s >= 0:
            raise ValueError(f"backoff_s: expected 0 or more seconds, got {self.backoff_s!r}")

    def call(self, attempt: Callable[[], T], what: str) -> T:
        """attempt() until it returns or the attempts are spent (then its last SourceError is raised).

        Only SourceError is retried: a DataError will not go away by asking again. Each retry logs
        one warning naming ``what``, the attempt, the wait and the error.
        """

        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "%s failed (attempt %d/%d), retrying in %.1fs: %s",
                what,
                state.attempt_number,
                self.attempts,
                state.upcoming_sleep,
                error,
            )

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_s, exp_base=2, min=0),
            retry=retry_if_exception_type(SourceError),
            sleep=self.sleep,
            before_sleep=log_retry,
            reraise=True,
        )
        return retrying(attempt)


DEFAULT_RETRY = RetryPolicy()
