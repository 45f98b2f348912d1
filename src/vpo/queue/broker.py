"""The Redis broker and the `process_file` actor, declared alike by the enqueuer and the
worker so that both agree on the queue and the retry rules.

- One message per file, queue `vpo`; a worker prefetches one message per thread.
- Dramatiq's 10-minute time limit is lifted to 24 hours: a transcode may take hours.
- A failure that may pass (the file claimed by another VPO, a worker stopped mid-run,
  the server unreachable) is retried at most `MAX_RETRIES` times with exponential
  backoff; then, and at once for a message that can never run (`InvalidMessage`: bad
  fields, a changed file), the message goes to Dramatiq's dead-letter list in Redis
  (`dramatiq:vpo.XQ`, kept `DEAD_MESSAGE_TTL_MS`).
"""

from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from vpo.errors import VpoError
from vpo.queue.message import InvalidMessage

QUEUE_NAME = "vpo"
ACTOR_NAME = "process_file"
TIME_LIMIT_MS = 24 * 60 * 60 * 1000
MAX_RETRIES = 3
MIN_BACKOFF_MS = 15_000
MAX_BACKOFF_MS = 15 * 60 * 1000
DEAD_MESSAGE_TTL_MS = 7 * 24 * 60 * 60 * 1000


def make_broker(url: str) -> RedisBroker:
    """A broker on the Redis at `url` (redis://HOST:PORT/DB), checked to answer.

    The middleware is listed, not Dramatiq's default: no Prometheus exposition of its
    own (VPO serves its metrics) and nothing that a CLI process does not need."""
    broker = RedisBroker(
        url=url,
        middleware=[
            AgeLimit(),
            TimeLimit(),
            ShutdownNotifications(),
            Callbacks(),
            Pipelines(),
            Retries(max_retries=MAX_RETRIES),
        ],
        dead_message_ttl=DEAD_MESSAGE_TTL_MS,
    )
    try:
        broker.client.ping()
    except Exception as exc:  # redis' errors: connection refused, auth, bad URL
        raise VpoError(f"Cannot reach the queue's Redis: {exc}") from exc
    return broker


def declare(broker: RedisBroker, handler: Callable[[dict[str, Any]], None]) -> dramatiq.Actor:
    """The `process_file` actor on `broker`, running `handler(message dict)`."""
    return dramatiq.actor(
        handler,
        actor_name=ACTOR_NAME,
        queue_name=QUEUE_NAME,
        broker=broker,
        time_limit=TIME_LIMIT_MS,
        max_retries=MAX_RETRIES,
        min_backoff=MIN_BACKOFF_MS,
        max_backoff=MAX_BACKOFF_MS,
        throws=(InvalidMessage,),
    )
