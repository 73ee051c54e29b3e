"""Limits on open streams, per topic (the queue package: per doctor and per account).

Each open stream holds one lease, counted in one or more topics: the stream's own topic
first, then any others the caller names (`also`), each with its own limit, or None for
a topic the lease is counted in (so it is watched) but never refused by. With Redis the
leases of one topic live in a sorted set scored by expiry time (Redis' own clock, so
instances with skewed clocks agree); one Lua script drops the expired leases, checks
every limit and adds the new lease to every set only if all of them have room,
atomically, so the limits hold across every worker of every instance sharing that
Redis. A stream removes its lease when it ends; releases that coincide
(a worker stopping, a network blip) go out together in one pipelined round trip.

Renewal is batched: each worker process keeps the leases of its open streams, and one
background renewer (a greenlet under gevent, started with the first lease after the
fork) renews all of them once per heartbeat in one Lua call per RENEW_BATCH leases,
instead of one round trip per stream per heartbeat. The renewer stops when the process
has no lease left. A renewal and a release never overlap (one lock around their round
trips), so a lease released during a renewal is not re-added. A crashed worker's
renewer dies with it, so its leases expire by themselves after LEASE_HEARTBEATS
heartbeats, as before.

When Redis is unreachable the limiter fails open to a per-process count (the same limit
per worker): the waiting rooms keep their screens during an outage, and the worst case
is `limit x workers` streams for a doctor until Redis is back. Renewals and releases
that fail are dropped; those leases simply expire.

The embedded default (one worker, no Redis) counts in process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
import weakref
from dataclasses import dataclass

import redis
from flask import Flask, current_app

from hms.core.outage import Dependency, fail_fast

log = logging.getLogger(__name__)
# A Redis outage is logged once when it starts and once when it ends, with a count.
REDIS_LIMITS = Dependency("Redis stream limits")
EXTENSION_KEY = "hms.realtime.slots"
# A lease outlives this many missed heartbeats before it is considered dead.
LEASE_HEARTBEATS = 3
KEY_PREFIX = "hms-sse:leases:"
# Leases renewed per Lua call: bounds how long one renewal keeps Redis busy.
RENEW_BATCH = 1000
# Every RedisSlots built in this process (tests stop their renewers between tests).
_all_slots: weakref.WeakSet[RedisSlots] = weakref.WeakSet()

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
# KEYS: the lease's topic sets; ARGV: ttl in ms, lease id, then one limit per key (-1: none)
# -> {1, 0} granted, or {0, i}: refused by the i-th key's limit (1-based).
ACQUIRE_LUA = (
    _NOW_MS
    + """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local limit = tonumber(ARGV[2 + i])
  if limit >= 0 and redis.call('ZCARD', key) >= limit then return {0, i} end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, ARGV[2])
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
return {1, 0}
"""
)
# KEYS: lease sets; ARGV: ttl in ms, then per key its number of lease ids and the ids.
# Re-adds a lease lost with a Redis restart: a stream that was admitted stays counted.
RENEW_MANY_LUA = (
    _NOW_MS
    + """
local ttl = tonumber(ARGV[1])
local at = 2
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[at])
  for i = 1, n do
    redis.call('ZADD', key, now + ttl, ARGV[at + i])
  end
  at = at + n + 1
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
return 1
"""
)
COUNT_LUA = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""
)


Topic = int | str
# A topic the lease is also counted in, and its limit (None: counted, never refused).
Claim = tuple[Topic, int | None]


@dataclass(frozen=True)
class Lease:
    topics: tuple[Topic, ...]  # every topic it counts in; the stream's own first
    lease_id: str
    shared: bool  # granted by Redis; False: by this process's own count
    refused_by: Topic | None = None  # a refusal: the topic whose limit was full


def refusal(topic: Topic) -> Lease:
    return Lease((), "", shared=False, refused_by=topic)


def _new_lease_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"


class _Slots:
    """What both kinds of slots share: `acquire` on top of their `claim`."""

    def acquire(
        self, topic: Topic, limit: int | None, ttl_seconds: float, *, also: tuple[Claim, ...] = ()
    ) -> Lease | None:
        """A lease counted in `topic` and every topic of `also`, if each has room under
        its limit; else None (`claim` says which limit refused)."""
        lease = self.claim(((topic, limit), *also), ttl_seconds)
        return lease if lease.refused_by is None else None

    def claim(self, claims: tuple[Claim, ...], ttl_seconds: float) -> Lease:
        raise NotImplementedError


class InProcessSlots(_Slots):
    """Leases counted in this process: the embedded default, and the Redis fallback."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[Topic, set[str]] = {}

    def claim(self, claims: tuple[Claim, ...], ttl_seconds: float) -> Lease:
        with self._lock:
            for topic, limit in claims:
                if limit is not None and len(self._leases.get(topic, ())) >= limit:
                    return refusal(topic)
            lease = Lease(tuple(topic for topic, _ in claims), _new_lease_id(), shared=False)
            for topic in lease.topics:
                self._leases.setdefault(topic, set()).add(lease.lease_id)
            return lease

    def release(self, lease: Lease) -> None:
        with self._lock:
            for topic in lease.topics:
                held = self._leases.get(topic)
                if held is not None:
                    held.discard(lease.lease_id)
                    if not held:
                        del self._leases[topic]

    def count(self, topic: Topic) -> int:
        with self._lock:
            return len(self._leases.get(topic, ()))

    def watched(self, topic: Topic) -> bool:
        """Whether a stream counted in this topic is open."""
        return self.count(topic) > 0


class RedisSlots(_Slots):
    """Leases in Redis, shared by every worker and instance on that Redis database."""

    def __init__(self, url: str):
        self.url = url
        self.local = InProcessSlots()
        self._client: redis.Redis | None = None
        self._pid: int | None = None
        self._scripts: dict[str, redis.commands.core.Script] = {}
        # This process's shared leases: lease id -> (lease, ttl in seconds).
        self._held: dict[str, tuple[Lease, float]] = {}
        self._held_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._renewer_pid: int | None = None
        self._stopped = threading.Event()
        self.renewals = 0  # batched renewal calls made (tests, diagnostics)
        self._to_release: list[Lease] = []
        self._io_lock = threading.Lock()  # renewals and releases take turns in Redis
        self._releasing = False
        _all_slots.add(self)

    def _redis(self) -> redis.Redis:
        if self._client is None or self._pid != os.getpid():
            self._client = redis.Redis.from_url(
                self.url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=fail_fast()
            )
            self._pid = os.getpid()
            self._scripts = {
                name: self._client.register_script(lua)
                for name, lua in (
                    ("acquire", ACQUIRE_LUA),
                    ("renew_many", RENEW_MANY_LUA),
                    ("count", COUNT_LUA),
                )
            }
        return self._client

    def _script(self, name: str):
        self._redis()
        return self._scripts[name]

    @staticmethod
    def key(topic: Topic) -> str:
        return f"{KEY_PREFIX}{topic}"

    def claim(self, claims: tuple[Claim, ...], ttl_seconds: float) -> Lease:
        lease_id = _new_lease_id()
        limits = [-1 if limit is None else limit for _, limit in claims]
        try:
            granted, refused_at = self._script("acquire")(
                keys=[self.key(topic) for topic, _ in claims],
                args=[int(ttl_seconds * 1000), lease_id, *limits],
            )
        except redis.RedisError as exc:
            REDIS_LIMITS.failed("taking a stream lease (counted in this process meanwhile)", exc)
            return self.local.claim(claims, ttl_seconds)
        REDIS_LIMITS.ok()
        if not granted:
            return refusal(claims[int(refused_at) - 1][0])
        lease = Lease(tuple(topic for topic, _ in claims), lease_id, shared=True)
        self._hold(lease, ttl_seconds)
        return lease

    # -- batched renewal ------------------------------------------------------------

    def _hold(self, lease: Lease, ttl_seconds: float) -> None:
        """Renew this lease with the process's others until it is released."""
        with self._held_lock:
            self._held[lease.lease_id] = (lease, ttl_seconds)
            pid = os.getpid()
            if self._renewer is not None and self._renewer_pid == pid and self._renewer.is_alive():
                return
            self._stopped.clear()
            self._renewer_pid = pid
            self._renewer = threading.Thread(target=self._renew_loop, name="hms-lease-renewer", daemon=True)
            self._renewer.start()

    def held(self) -> int:
        """Leases this process renews."""
        with self._held_lock:
            return len(self._held)

    def _renew_loop(self) -> None:
        while True:
            with self._held_lock:
                if not self._held or self._stopped.is_set():
                    self._renewer = None
                    return
                interval = min(ttl for _, ttl in self._held.values()) / LEASE_HEARTBEATS
            if self._stopped.wait(interval):
                with self._held_lock:
                    self._renewer = None
                return
            self.renew_all()

    def renew_all(self) -> int:
        """Renew every lease this process holds: one Lua call per RENEW_BATCH leases.

        Returns how many were renewed (0 when Redis is unavailable: they are tried again
        at the next tick, and expire if Redis stays away longer than their TTL)."""
        with self._io_lock:
            return self._renew_held()

    def _renew_held(self) -> int:
        with self._held_lock:
            held = list(self._held.values())
        groups: dict[float, dict[str, list[str]]] = {}
        for lease, ttl in held:
            for topic in lease.topics:
                groups.setdefault(ttl, {}).setdefault(self.key(topic), []).append(lease.lease_id)
        renewed = 0
        started = time.monotonic()
        try:
            for ttl, by_key in groups.items():
                keys, args, count = [], [int(ttl * 1000)], 0
                for key, lease_ids in by_key.items():
                    keys.append(key)
                    args += [len(lease_ids), *lease_ids]
                    count += len(lease_ids)
                    if count >= RENEW_BATCH:
                        self._script("renew_many")(keys=keys, args=args)
                        renewed, keys, args, count = renewed + count, [], [int(ttl * 1000)], 0
                if keys:
                    self._script("renew_many")(keys=keys, args=args)
                    renewed += count
        except redis.RedisError as exc:
            # Retried at the next heartbeat; the leases expire if Redis stays away.
            REDIS_LIMITS.failed("renewing stream leases", exc)
        else:
            if renewed:
                REDIS_LIMITS.ok()
        self.renewals += 1
        log.debug("renewed %s stream leases in %.1f ms", renewed, 1000 * (time.monotonic() - started))
        return renewed

    def stop(self) -> None:
        """Stop renewing (tests; what a crash does). The leases stay until they expire."""
        self._stopped.set()
        renewer = self._renewer
        if renewer is not None and self._renewer_pid == os.getpid():
            renewer.join(timeout=5)
        with self._held_lock:
            self._held.clear()

    def release(self, lease: Lease) -> None:
        if not lease.shared:
            self.local.release(lease)
            return
        with self._held_lock:
            self._held.pop(lease.lease_id, None)
            self._to_release.append(lease)
            if self._releasing:
                return  # the release in flight takes this one too, in its next round trip
            self._releasing = True
        # Group commit: this caller removes its lease, and every lease released meanwhile
        # by other streams (a worker shutting down, a network blip: thousands at once),
        # in one pipelined round trip per round, instead of one connection each.
        try:
            while True:
                with self._held_lock:
                    batch, self._to_release = self._to_release, []
                    if not batch:
                        self._releasing = False
                        return
                self._remove(batch)
        except BaseException:
            with self._held_lock:
                self._releasing = False
            raise

    def _remove(self, leases: list[Lease]) -> None:
        by_key: dict[str, list[str]] = {}
        for lease in leases:
            for topic in lease.topics:
                by_key.setdefault(self.key(topic), []).append(lease.lease_id)
        try:
            with self._io_lock:
                pipe = self._redis().pipeline(transaction=False)
                for key, lease_ids in by_key.items():
                    pipe.zrem(key, *lease_ids)
                pipe.execute()
        except redis.RedisError as exc:
            REDIS_LIMITS.failed("releasing stream leases (they expire by themselves)", exc)
        else:
            REDIS_LIMITS.ok()

    def watched(self, topic: Topic) -> bool:
        """Whether a stream counted in this topic may be open on any worker: its lease set
        exists (it expires with its last lease). False when Redis is unavailable."""
        try:
            watched = bool(self._redis().exists(self.key(topic)))
        except redis.RedisError as exc:
            REDIS_LIMITS.failed("checking for open streams", exc)
            return False
        REDIS_LIMITS.ok()
        return watched

    def count(self, topic: Topic) -> int:
        """Live shared leases of a topic (plus this process's fallback ones)."""
        shared = self._script("count")(keys=[self.key(topic)])
        return int(shared) + self.local.count(topic)


class StreamSlots:
    """The Flask extension: Redis leases when REDIS_URL is set, else in process."""

    def init_app(self, app: Flask) -> None:
        url = app.config.get("REDIS_URL")
        app.extensions[EXTENSION_KEY] = RedisSlots(url) if url else InProcessSlots()

    @staticmethod
    def get(app: Flask | None = None) -> InProcessSlots | RedisSlots:
        return (app or current_app).extensions[EXTENSION_KEY]


def lease_ttl_seconds(heartbeat_seconds: float) -> float:
    return LEASE_HEARTBEATS * heartbeat_seconds


def stop_all_renewers() -> None:
    """Stop the lease renewers of every RedisSlots of this process (tests)."""
    for slots in list(_all_slots):
        slots.stop()
