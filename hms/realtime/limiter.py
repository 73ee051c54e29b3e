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

Taking over a stale slot: a lease records its owner (the queue package names the
account) at the front of its id, "<owner>|<host>:<pid>:<random>". A claim that may take
over (a reconnect that carries Last-Event-ID: the client is the one whose old stream may
still hold a slot) and finds a limit full removes the stalest lease of the SAME owner
in the stream's own topic (the earliest expiry: the one renewed longest ago) from every
topic it counts in, then checks the limits again, in the same atomic step. Another
owner's leases are never touched. The displaced lease is marked (a key that lives one
lease TTL); the worker renewing it finds the mark at its next renewal instead of
re-adding the lease, and reports it through `take_displaced()`, so its stream ends
(hms/realtime/stream.py's watcher asks every half second). In process the displaced
lease is reported at once.
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
DISPLACED_PREFIX = "hms-sse:displaced:"
# KEYS: the lease's topic sets; ARGV: ttl in ms, lease id, the owner prefix of a lease that
# may be taken over ("": none), the displaced-mark key prefix, then one limit per key
# (-1: none) -> {1, 0, victim or ""} granted, or {0, i, ""}: refused by the i-th key's
# limit (1-based).
ACQUIRE_LUA = (
    _NOW_MS
    + """
local ttl = tonumber(ARGV[1])
local owner = ARGV[3]
local function full()
  for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[4 + i])
    if limit >= 0 and redis.call('ZCARD', key) >= limit then return i end
  end
  return 0
end
for _, key in ipairs(KEYS) do redis.call('ZREMRANGEBYSCORE', key, '-inf', now) end
local refused = full()
local victim = ''
if refused > 0 and owner ~= '' then
  -- the stalest lease of the same owner in the stream's own topic (sorted by expiry)
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if string.sub(member, 1, #owner) == owner then victim = member break end
  end
  if victim ~= '' then
    for _, key in ipairs(KEYS) do redis.call('ZREM', key, victim) end
    redis.call('SET', ARGV[4] .. victim, 1, 'PX', ttl)
    refused = full()
  end
end
if refused > 0 then return {0, refused, ''} end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, ARGV[2])
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
return {1, 0, victim}
"""
)
# KEYS: lease sets; ARGV: ttl in ms, the displaced-mark key prefix, then per key its
# number of lease ids and the ids -> the ids that were displaced (taken over).
# Re-adds a lease lost with a Redis restart: a stream that was admitted stays counted;
# but not a displaced one (only a lease that was missing is looked up: no cost otherwise).
RENEW_MANY_LUA = (
    _NOW_MS
    + """
local ttl = tonumber(ARGV[1])
local displaced = {}
local at = 3
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[at])
  for i = 1, n do
    local lease = ARGV[at + i]
    if redis.call('ZADD', key, now + ttl, lease) == 1 and redis.call('EXISTS', ARGV[2] .. lease) == 1 then
      redis.call('ZREM', key, lease)
      displaced[#displaced + 1] = lease
    end
  end
  at = at + n + 1
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
return displaced
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


def _new_lease_id(owner: str | None) -> str:
    """The owner (if any) first, so that a claim can find that owner's leases."""
    return f"{_owner_prefix(owner)}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"


def _owner_prefix(owner: str | None) -> str:
    return f"{owner}|" if owner else ""


class _Slots:
    """What both kinds of slots share: `acquire` on top of their `claim`, and the leases
    taken over from this process, until `take_displaced` hands them out."""

    def __init__(self) -> None:
        self._displaced: set[str] = set()
        self._displaced_lock = threading.Lock()

    def acquire(
        self, topic: Topic, limit: int | None, ttl_seconds: float, *, also: tuple[Claim, ...] = ()
    ) -> Lease | None:
        """A lease counted in `topic` and every topic of `also`, if each has room under
        its limit; else None (`claim` says which limit refused)."""
        lease = self.claim(((topic, limit), *also), ttl_seconds)
        return lease if lease.refused_by is None else None

    def claim(
        self,
        claims: tuple[Claim, ...],
        ttl_seconds: float,
        *,
        owner: str | None = None,
        take_over: bool = False,
    ) -> Lease:
        """A lease counted in every claimed topic, or a refusal naming the full one.
        `owner` is recorded in the lease; with `take_over`, a full limit first gives up
        the stalest lease of the same owner in the first topic (see the module notes)."""
        raise NotImplementedError

    def _displace(self, lease_ids) -> None:
        if lease_ids:
            with self._displaced_lock:
                self._displaced.update(lease_ids)

    def take_displaced(self) -> set[str]:
        """The ids of this process's leases taken over since the last call (their streams end)."""
        if not self._displaced:
            return set()
        with self._displaced_lock:
            displaced, self._displaced = self._displaced, set()
        return displaced


class InProcessSlots(_Slots):
    """Leases counted in this process: the embedded default, and the Redis fallback."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        # topic -> its lease ids, oldest first (a dict keeps the order they were taken in)
        self._leases: dict[Topic, dict[str, None]] = {}

    def _full(self, claims: tuple[Claim, ...]) -> Topic | None:
        for topic, limit in claims:
            if limit is not None and len(self._leases.get(topic, ())) >= limit:
                return topic
        return None

    def claim(
        self,
        claims: tuple[Claim, ...],
        ttl_seconds: float,
        *,
        owner: str | None = None,
        take_over: bool = False,
    ) -> Lease:
        topics = tuple(topic for topic, _ in claims)
        with self._lock:
            full = self._full(claims)
            if full is not None and take_over and owner:
                prefix = _owner_prefix(owner)
                victim = next(
                    (held for held in self._leases.get(topics[0], ()) if held.startswith(prefix)), None
                )
                if victim is not None:
                    self._remove(topics, victim)
                    self._displace((victim,))
                    full = self._full(claims)
            if full is not None:
                return refusal(full)
            lease = Lease(topics, _new_lease_id(owner), shared=False)
            for topic in topics:
                self._leases.setdefault(topic, {})[lease.lease_id] = None
            return lease

    def _remove(self, topics: tuple[Topic, ...], lease_id: str) -> None:
        for topic in topics:
            held = self._leases.get(topic)
            if held is not None:
                held.pop(lease_id, None)
                if not held:
                    del self._leases[topic]

    def release(self, lease: Lease) -> None:
        with self._lock:
            self._remove(lease.topics, lease.lease_id)

    def count(self, topic: Topic) -> int:
        with self._lock:
            return len(self._leases.get(topic, ()))

    def watched(self, topic: Topic) -> bool:
        """Whether a stream counted in this topic is open."""
        return self.count(topic) > 0


class RedisSlots(_Slots):
    """Leases in Redis, shared by every worker and instance on that Redis database."""

    def __init__(self, url: str):
        super().__init__()
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

    def claim(
        self,
        claims: tuple[Claim, ...],
        ttl_seconds: float,
        *,
        owner: str | None = None,
        take_over: bool = False,
    ) -> Lease:
        lease_id = _new_lease_id(owner)
        limits = [-1 if limit is None else limit for _, limit in claims]
        owner_prefix = _owner_prefix(owner) if take_over else ""
        try:
            granted, refused_at, victim = self._script("acquire")(
                keys=[self.key(topic) for topic, _ in claims],
                args=[int(ttl_seconds * 1000), lease_id, owner_prefix, DISPLACED_PREFIX, *limits],
            )
        except redis.RedisError as exc:
            REDIS_LIMITS.failed("taking a stream lease (counted in this process meanwhile)", exc)
            return self.local.claim(claims, ttl_seconds, owner=owner, take_over=take_over)
        REDIS_LIMITS.ok()
        if not granted:
            return refusal(claims[int(refused_at) - 1][0])
        if victim:
            self._forget_displaced({victim.decode() if isinstance(victim, bytes) else victim})
        lease = Lease(tuple(topic for topic, _ in claims), lease_id, shared=True)
        self._hold(lease, ttl_seconds)
        return lease

    def _forget_displaced(self, lease_ids: set[str]) -> None:
        """Leases taken over: this process renews only those it holds, and ends their streams."""
        with self._held_lock:
            mine = {lease_id for lease_id in lease_ids if self._held.pop(lease_id, None) is not None}
        self._displace(mine)

    def take_displaced(self) -> set[str]:
        return super().take_displaced() | self.local.take_displaced()

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
        displaced: set = set()
        started = time.monotonic()
        try:
            for ttl, by_key in groups.items():
                keys, args, count = [], [int(ttl * 1000), DISPLACED_PREFIX], 0
                for key, lease_ids in by_key.items():
                    keys.append(key)
                    args += [len(lease_ids), *lease_ids]
                    count += len(lease_ids)
                    if count >= RENEW_BATCH:
                        displaced.update(self._script("renew_many")(keys=keys, args=args))
                        renewed, keys, args, count = (
                            renewed + count,
                            [],
                            [int(ttl * 1000), DISPLACED_PREFIX],
                            0,
                        )
                if keys:
                    displaced.update(self._script("renew_many")(keys=keys, args=args))
                    renewed += count
        except redis.RedisError as exc:
            # Retried at the next heartbeat; the leases expire if Redis stays away.
            REDIS_LIMITS.failed("renewing stream leases", exc)
        else:
            if renewed:
                REDIS_LIMITS.ok()
        if displaced:
            self._forget_displaced({lease_id.decode() for lease_id in displaced})
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
