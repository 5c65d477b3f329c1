"""The approved retry policy (Option 3, hybrid): what is retried automatically, and when."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from imagelingo_cli.errors import DEFAULT_AUTO_RETRY, ErrorCode, SetupError, TranslationError
from imagelingo_cli.limits import MAX_RETRIES


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    auto_retry: bool = True
    auto_retry_codes: frozenset[ErrorCode] = DEFAULT_AUTO_RETRY
    base_delay: float = 2.0
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.2  # up to +20 %, so concurrent retries do not fire together
    max_wait: float = 60.0  # a server delay beyond this is not waited for: QUOTA_EXHAUSTED

    def __post_init__(self) -> None:
        if not 0 <= self.max_retries <= MAX_RETRIES:
            raise SetupError(
                f"automatic retries must be between 0 and {MAX_RETRIES} (got {self.max_retries})"
            )
        if not self.max_wait >= 0:
            raise SetupError(f"the longest wait cannot be negative (got {self.max_wait:g} s)")
        unretryable = sorted(c.value for c in self.auto_retry_codes if not c.can_be_transient)
        if unretryable:
            raise SetupError(f"{', '.join(unretryable)} cannot be retried automatically")

    @property
    def max_attempts(self) -> int:
        return 1 + (self.max_retries if self.auto_retry else 0)

    def escalate(self, error: TranslationError) -> TranslationError:
        """A rate limit asking for a wait longer than `max_wait` means the quota is gone for
        now. Only a rate limit: a 503 whose text says "retry in 90s" is one busy server, not
        the project's quota, and must not stop the run."""
        delay = error.retry_after_ms
        if (
            error.code is ErrorCode.RATE_LIMIT
            and delay is not None
            and delay > self.max_wait * 1000
        ):
            note = (
                f" (server asked to wait {delay / 1000:g} s, longer than the {self.max_wait:g} s"
                " this run waits at most)"
            )
            return replace(error, code=ErrorCode.QUOTA_EXHAUSTED, message=error.message + note)
        return error

    def retries(self, error: TranslationError, attempt: int) -> bool:
        """Whether attempt `attempt` (1-based, within this round) is followed by another."""
        return (
            self.auto_retry
            and attempt < self.max_attempts
            and error.transient
            and error.code in self.auto_retry_codes
            and (error.retry_after_ms or 0) <= self.max_wait * 1000  # longer is not waited for
        )

    def delay(self, error: TranslationError, attempt: int, rng: random.Random) -> float:
        """Seconds before the next attempt: 2 s, 4 s, … or the server's delay when longer."""
        backoff = min(self.base_delay * self.multiplier ** (attempt - 1), self.max_delay)
        server = (error.retry_after_ms or 0) / 1000
        return max(backoff, server) * (1 + rng.uniform(0, self.jitter))
