"""The ingress's side of the shards: one call to every shard's searcher deployment through its
Ray Serve handle, bounded in time, and the shards' answers merged as one index's
(core.index.shard_merge, the same merge as the in-process sharded index).

Faults become the service's own errors, never a 500 or a hang:

- a replica that died, or is being replaced, is retried on another replica
  (``fanout_retries``) within the call's deadline, then answers 503 with ``Retry-After``;
- a shard that does not answer within ``fanout_timeout_s`` answers 503 with ``Retry-After``;
- a replica whose queue is full answers 429;
- an error the shard raised on purpose (a bad filter, a full disk) is raised again as itself,
  without Ray's traceback (which names server paths).

Writes are never retried: a replica that died during one may or may not have committed it.
The client is told 503 and may send it again (upserts and deletes are idempotent).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from ray import exceptions as ray_errors
from ray.serve import exceptions as serve_errors

from core.errors import DeadlineError, NotReadyError, OverloadedError, SemsearchError

T = TypeVar("T")

# A replica gone or not yet there: another replica (or the replacement) may answer.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    ray_errors.RayActorError,  # ActorDiedError and ActorUnavailableError among them
    ray_errors.WorkerCrashedError,
    ray_errors.NodeDiedError,
    ray_errors.ObjectLostError,
    serve_errors.DeploymentUnavailableError,
)


@dataclass
class Fanout:
    timeout_s: float  # the longest wait for one shard's answer (settings.fanout_timeout_s)
    retries: int  # extra attempts on another replica after a replica died (settings.fanout_retries)

    async def call(self, what: str, make: Callable[[], Awaitable[T]], retry: bool = True) -> T:
        """``make()``'s answer (a handle call), or the service's error for its failure."""
        deadline = time.monotonic() + self.timeout_s
        attempts = 1 + (self.retries if retry else 0)
        for attempt in range(attempts):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            response: Any = None
            try:
                response = make()
                return await asyncio.wait_for(response, left)
            except TimeoutError:
                cancel = getattr(response, "cancel", None)
                if cancel is not None:
                    cancel()
                raise DeadlineError(
                    f"{what} did not answer within {self.timeout_s:g} s (SEMSEARCH_FANOUT_TIMEOUT_S)",
                    retry_after_s=1,
                ) from None
            except ray_errors.RayTaskError as exc:
                cause = exc.cause
                if isinstance(cause, SemsearchError):
                    raise _fresh(cause) from None
                if isinstance(cause, _UNAVAILABLE):
                    if attempt + 1 < attempts:
                        continue
                    break
                raise
            except serve_errors.BackPressureError:
                raise OverloadedError(
                    f"{what} has too many requests queued; retry", retry_after_s=1
                ) from None
            except _UNAVAILABLE:
                if attempt + 1 < attempts:
                    await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                    continue
                break
        raise NotReadyError(f"{what} is unavailable (a replica is restarting); retry shortly")

    async def gather(
        self, calls: Sequence[tuple[str, Callable[[], Awaitable[T]]]], retry: bool = True
    ) -> list[T]:
        """Every ``(what, make)`` at once (one per shard); the first failure is the answer's."""
        return list(await asyncio.gather(*(self.call(what, make, retry) for what, make in calls)))

    async def settle(
        self, calls: Sequence[tuple[str, Callable[[], Awaitable[T]]]], retry: bool = True
    ) -> list[T | BaseException]:
        """As :meth:`gather`, but every call runs to its end and failures come back in place
        (a write's shards that committed are noted even when another shard's part failed)."""
        return list(
            await asyncio.gather(
                *(self.call(what, make, retry) for what, make in calls), return_exceptions=True
            )
        )


def _fresh(exc: SemsearchError) -> SemsearchError:
    """The shard's own error again, its message and attributes only (no remote traceback)."""
    clone: Any = exc.__class__.__new__(exc.__class__)
    clone.__dict__.update(exc.__dict__)
    clone.args = exc.args
    return cast(SemsearchError, clone)
