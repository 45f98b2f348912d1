"""What `vpo queue` reads and moves in the queue's Redis: how many messages wait, wait
for a retry or are dead, the dead letters themselves, and their retry (docs/cli.md).

Dramatiq keeps a queue's dead letters in a sorted set `dramatiq:vpo.XQ` (Redis message
id → when it died, in ms) and a hash `dramatiq:vpo.XQ.msgs` (id → the encoded message).
A dead letter is named by that id (a UUID; any unique prefix of its hex digits will do,
as for run ids). Its reason and attempts are the options `DeadLetterReasons` wrote.

A retry goes through the broker: the dead letter is first claimed (removed from the
sorted set: of two `vpo queue retry` at once, one moves it), then a copy without its
retry count is enqueued, then its data deleted. If the enqueue fails the claim is undone;
a `vpo queue retry` killed between the claim and the delete leaves the data in the hash,
no longer listed (a message enqueued, or one lost from view — never one run twice).
"""

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.errors import DecodeError

from vpo.errors import InvalidInputError, NoStatisticsError, VpoError
from vpo.policy.loader import parse_policy
from vpo.queue.broker import ATTEMPTS_OPTION, QUEUE_NAME, REASON_OPTION, make_broker
from vpo.timefmt import format_utc

# What a retried message starts again without: Dramatiq's retry state and ours.
_RESET_OPTIONS = frozenset(
    {"retries", "traceback", "requeue_timestamp", "eta", "redis_message_id"}
    | {REASON_OPTION, ATTEMPTS_OPTION}
)
MIN_PREFIX = 4  # hex digits of an id prefix, at least


@dataclass(frozen=True)
class QueueCounts:
    waiting: int  # in the queue, not yet taken
    taken: int  # taken by a worker: running, or prefetched
    delayed: int  # waiting for a retry (their backoff)
    dead: int  # dead letters

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DeadLetter:
    id: str  # the Redis message id: what `vpo queue retry` takes
    message_id: str  # Dramatiq's, the same over every retry
    root: str | None
    relative_path: str | None
    policy: str | None
    attempts: int | None
    died_time: str  # ISO-8601 UTC
    enqueued_time: str | None  # None: unreadable
    reason: str | None
    trace_id: str | None

    @property
    def path(self) -> str | None:
        if self.root is None or self.relative_path is None:
            return None
        return self.root.rstrip("/") + "/" + self.relative_path

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "path": self.path}


class DeadLetters:
    """The queue's Redis at `url` (one sentence, exit 1, when it does not answer)."""

    def __init__(self, url: str) -> None:
        self.broker: RedisBroker = make_broker(url)
        self.client: redis.Redis = self.broker.client
        namespace = self.broker.namespace
        self.queue = f"{namespace}:{QUEUE_NAME}"
        self.delayed = f"{namespace}:{dq_name(QUEUE_NAME)}"
        self.dead = f"{namespace}:{xq_name(QUEUE_NAME)}"

    def close(self) -> None:
        self.broker.close()

    def __enter__(self) -> "DeadLetters":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def counts(self) -> QueueCounts:
        """The four counts read at one instant (a MULTI), so they add up."""
        pipe = self.client.pipeline(transaction=True)
        pipe.llen(self.queue)
        pipe.hlen(self.queue + ".msgs")
        pipe.hlen(self.delayed + ".msgs")  # with those a worker holds until their time
        pipe.zcard(self.dead)
        listed, stored, delayed, dead = self._run(pipe)
        return QueueCounts(listed, max(stored - listed, 0), delayed, dead)

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter, the oldest death first."""
        ids = self._run_one(lambda: self.client.zrange(self.dead, 0, -1, withscores=True))
        if not ids:
            return []
        names = [member.decode() for member, _score in ids]
        data = self._run_one(lambda: self.client.hmget(self.dead + ".msgs", names))
        return [
            _dead_letter(name, score, raw)
            for name, (_member, score), raw in zip(names, ids, data, strict=True)
            if raw is not None  # retried or expired between the two reads
        ]

    def resolve(self, wanted: list[str]) -> list[str]:
        """The full ids of `wanted` (ids or unique prefixes of their hex digits), all
        checked before anything is moved."""
        known = self.all_ids()
        found = []
        for text in wanted:
            key = text.replace("-", "").lower()
            if len(key) < MIN_PREFIX:
                raise InvalidInputError(
                    f"{text!r} is too short for a dead letter's id: give {MIN_PREFIX} "
                    "hex digits or more."
                )
            matches = [name for name in known if name.replace("-", "").startswith(key)]
            if len(matches) > 1:
                raise InvalidInputError(
                    f"{text!r} names {len(matches)} dead letters; give more of its digits."
                )
            if not matches:
                raise NoStatisticsError(
                    f"No dead letter with id {text} in the queue (see `vpo queue dead`)."
                )
            if matches[0] not in found:
                found.append(matches[0])
        return found

    def all_ids(self) -> list[str]:
        return [m.decode() for m in self._run_one(lambda: self.client.zrange(self.dead, 0, -1))]

    def retry(self, ids: list[str]) -> int:
        """Move the dead letters `ids` back to the queue, their retry count reset;
        return how many moved (one retried meanwhile by someone else is not)."""
        return sum(self._run_one(lambda name=name: self._retry_one(name)) for name in ids)

    def purge(self, ids: list[str]) -> int:
        """Delete the dead letters `ids`; return how many were still there."""
        deleted = 0
        for name in ids:
            pipe = self.client.pipeline(transaction=True)
            pipe.zrem(self.dead, name)
            pipe.hdel(self.dead + ".msgs", name)
            removed, _ = self._run(pipe)
            deleted += int(removed)
        return deleted

    def _retry_one(self, name: str) -> bool:
        raw = self.client.hget(self.dead + ".msgs", name)
        score = self.client.zscore(self.dead, name)
        if raw is None or score is None or not self.client.zrem(self.dead, name):
            return False  # gone meanwhile: retried by another, or expired
        try:
            old = Message.decode(raw)
            options = {k: v for k, v in old.options.items() if k not in _RESET_OPTIONS}
            self.broker.enqueue(dataclasses.replace(old, queue_name=QUEUE_NAME, options=options))
        except BaseException:
            self.client.zadd(self.dead, {name: score})  # listed again, as it was
            raise
        self.client.hdel(self.dead + ".msgs", name)
        return True

    def _run(self, pipe: Any) -> list[Any]:
        return self._run_one(pipe.execute)

    def _run_one(self, call: Any) -> Any:
        try:
            return call()
        except redis.RedisError as exc:
            raise VpoError(f"The queue's Redis failed: {exc}") from exc


def _dead_letter(name: str, score: float, raw: bytes) -> DeadLetter:
    """A stored dead letter for people and scripts; whatever cannot be read is None."""
    try:
        message = Message.decode(raw)
    except DecodeError:  # not a Dramatiq message: shown, so that it can be purged
        return DeadLetter(
            name, "", None, None, None, None, _utc(score), None,
            "not a Dramatiq message (cannot be decoded)", None,
        )  # fmt: skip
    args = message.args[0] if message.args and isinstance(message.args[0], dict) else {}
    options = message.options
    attempts = options.get(ATTEMPTS_OPTION)
    if attempts is None and "retries" in options:  # dead-lettered by an older VPO
        attempts = int(options["retries"])
    traceparent = args.get("traceparent")
    trace_id = traceparent.split("-")[1] if isinstance(traceparent, str) else None
    return DeadLetter(
        id=name,
        message_id=message.message_id,
        root=_text(args.get("root")),
        relative_path=_text(args.get("relative_path")),
        policy=_policy_name(args.get("policy_yaml")),
        attempts=attempts,
        died_time=_utc(score),
        enqueued_time=_utc(message.message_timestamp),
        reason=options.get(REASON_OPTION) or _last_line(options.get("traceback")),
        trace_id=trace_id if trace_id and len(trace_id) == 32 else None,
    )


def _utc(epoch_ms: float) -> str:
    return format_utc(datetime.fromtimestamp(epoch_ms / 1000, UTC))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _policy_name(policy_yaml: Any) -> str | None:
    """The `name` of the message's policy, read by the policy loader (bounded: a dead
    letter may be anything someone wrote into Redis); None if it is not a policy."""
    if not isinstance(policy_yaml, str):
        return None
    try:
        return parse_policy(policy_yaml, Path("<queued policy>")).name
    except VpoError:
        return None


def _last_line(traceback: Any) -> str | None:
    """The exception line of a traceback Dramatiq stored (a dead letter written without
    VPO's reason): the sentence, not the stack."""
    if not isinstance(traceback, str) or not traceback.strip():
        return None
    return traceback.strip().splitlines()[-1]
