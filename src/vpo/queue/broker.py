"""The Redis broker and the `process_file` actor, declared alike by the enqueuer and the
worker so that both agree on the queue and the retry rules.

- One message per file, queue `vpo`; a worker prefetches one message per thread.
- Dramatiq's 10-minute time limit is lifted to 24 hours: a transcode may take hours.
- A failed run, and a failure that may pass (the file claimed by another VPO, a worker
  stopped mid-run), is retried at most `MAX_RETRIES` times (`vpo worker --retries`)
  with exponential backoff from `MIN_BACKOFF_MS` (`--retry-delay`); then, and at once
  for a message that can never run (`InvalidMessage`: bad fields, a changed file), the
  message goes to Dramatiq's dead-letter list in Redis (`dramatiq:vpo.XQ`, kept
  `DEAD_MESSAGE_TTL_MS`), with the reason of its last attempt (`DeadLetterReasons`).
"""

import logging
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from dramatiq import Broker, Middleware, Retry
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker
from dramatiq.common import q_name, xq_name
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from vpo.errors import InvalidInputError, VpoError
from vpo.queue.message import InvalidMessage

QUEUE_NAME = "vpo"
ACTOR_NAME = "process_file"
TIME_LIMIT_MS = 24 * 60 * 60 * 1000
MAX_RETRIES = 3
MIN_BACKOFF_MS = 15_000
MAX_BACKOFF_MS = 15 * 60 * 1000
DEAD_MESSAGE_TTL_MS = 7 * 24 * 60 * 60 * 1000
REDIS_TIMEOUT_SECONDS = 30.0  # connecting, and each command (Dramatiq's never block)
REQUEUE_AFTER_MS = 60_000  # a worker silent this long is dead: its messages go back
# Kept in a message's options (Dramatiq's own: "retries", "traceback").
REASON_OPTION = "vpo_reason"  # why its last attempt failed, one sentence
ATTEMPTS_OPTION = "vpo_attempts"  # attempts that failed since it was (re)enqueued

log = logging.getLogger(__name__)

# Rewrites a dead letter only while it is one (not retried or expired meanwhile).
_REWRITE_DEAD_LETTER = """
if redis.call("zscore", KEYS[1], ARGV[1]) then
    redis.call("hset", KEYS[2], ARGV[1], ARGV[2])
    return 1
end
return 0
"""


def failure_reason(exception: BaseException) -> str:
    """The sentence a user sees for a failed attempt: VPO's own for its errors and
    retries, else the exception's type and text (never a traceback)."""
    if isinstance(exception, VpoError | Retry):
        return str(exception)
    return f"{type(exception).__name__}: {exception}"


class DeadLetterReasons(Middleware):
    """Keeps in each dead letter why its last attempt failed, and how many failed.

    Dramatiq dead-letters the message as it was last enqueued: the reason of the last
    attempt (all of it, for a message refused at once) is lost, and what the Retries
    middleware kept of the attempt before is a Python traceback. So every failure is
    noted in the message's options, and a dead letter is rewritten with them."""

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            return
        message.options[ATTEMPTS_OPTION] = int(message.options.get(ATTEMPTS_OPTION) or 0) + 1
        message.options[REASON_OPTION] = failure_reason(exception)

    def after_nack(self, broker: Broker, message: MessageProxy) -> None:
        if not isinstance(broker, RedisBroker):
            return
        dead = f"{broker.namespace}:{xq_name(q_name(message.queue_name))}"
        redis_id = message.options.get("redis_message_id")
        rewrite = broker.client.register_script(_REWRITE_DEAD_LETTER)
        rewrite(keys=[dead, dead + ".msgs"], args=[redis_id, message.encode()])
        reason = message.options.get(REASON_OPTION, "no reason recorded")
        log.warning("dead letter %s (vpo queue dead): %s", redis_id, reason)


def make_broker(url: str, requeue_after_ms: int = REQUEUE_AFTER_MS) -> RedisBroker:
    """A broker on the Redis at `url` (redis://HOST:PORT/DB), checked to answer.

    The middleware is listed, not Dramatiq's default: no Prometheus exposition of its
    own (VPO serves its metrics) and nothing that a CLI process does not need.

    A worker process that has not polled Redis for `requeue_after_ms` is dead: the next
    command of any other VPO puts its unacknowledged messages back in the queue. (A busy
    worker still polls its delay queue several times a second.) Dramatiq looks for dead workers on
    one command in a thousand by default, which on a quiet homelab queue can take hours;
    VPO's queues are small, so it looks on every command."""
    try:
        # Timeouts, so that a Redis that drops packets (rather than refusing) fails a
        # command instead of hanging a watch pass or a worker's shutdown.
        client = redis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
        )
        broker = RedisBroker(
            client=client,
            heartbeat_timeout=requeue_after_ms,
            maintenance_chance=MAINTENANCE_SCALE,
            middleware=[
                AgeLimit(),
                TimeLimit(),
                ShutdownNotifications(),
                Callbacks(),
                Pipelines(),
                Retries(max_retries=MAX_RETRIES),
                DeadLetterReasons(),  # after Retries: its hooks run before (emit_after reverses)
            ],
            dead_message_ttl=DEAD_MESSAGE_TTL_MS,
        )
    except ValueError as exc:  # redis' own sentence on a URL it cannot parse
        raise InvalidInputError(f"--queue {url!r}: {exc}.") from exc
    try:
        broker.client.ping()
    except Exception as exc:  # redis' errors: connection refused, auth, bad URL
        raise VpoError(f"Cannot reach the queue's Redis: {exc}") from exc
    return broker


def declare(
    broker: RedisBroker,
    handler: Callable[[dict[str, Any]], None],
    *,
    max_retries: int = MAX_RETRIES,
    min_backoff_ms: int = MIN_BACKOFF_MS,
) -> dramatiq.Actor:
    """The `process_file` actor on `broker`, running `handler(message dict)`. The retry
    options count on the worker's side only: Dramatiq's Retries reads them from the
    actor that ran the message."""
    return dramatiq.actor(
        handler,
        actor_name=ACTOR_NAME,
        queue_name=QUEUE_NAME,
        broker=broker,
        time_limit=TIME_LIMIT_MS,
        max_retries=max_retries,
        min_backoff=min_backoff_ms,
        max_backoff=MAX_BACKOFF_MS,
        throws=(InvalidMessage,),
    )
