"""The per-doctor limit on open streams (SSE_MAX_CONNECTIONS_PER_DOCTOR).

Each open stream holds a lease. With Redis the leases of one doctor live in a sorted
set scored by expiry time (Redis' own clock, so instances with skewed clocks agree);
one Lua script drops the expired leases, counts the rest and adds the new one only
below the limit, atomically, so the limit holds across every worker of every instance
sharing that Redis. A stream renews its lease at each heartbeat and removes it when it
ends; the leases of a crashed worker expire by themselves after LEASE_HEARTBEATS
heartbeats.

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
import uuid
from dataclasses import dataclass

import redis
from flask import Flask, current_app

log = logging.getLogger(__name__)
EXTENSION_KEY = "hms.realtime.slots"
# A lease outlives this many missed heartbeats before it is considered dead.
LEASE_HEARTBEATS = 3
KEY_PREFIX = "hms-sse:leases:"

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
_KEEP_KEY = """
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
"""
# KEYS[1] the doctor's lease set; ARGV: limit, ttl in ms, lease id -> {granted, count}
ACQUIRE_LUA = (
    _NOW_MS
    + """
local limit, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then return {0, count} end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
"""
    + _KEEP_KEY
    + """
return {1, count + 1}
"""
)
# ARGV: ttl in ms, lease id. Re-adds a lease lost with a Redis restart: a stream that
# was admitted stays counted.
RENEW_LUA = (
    _NOW_MS
    + """
local ttl = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
"""
    + _KEEP_KEY
    + """
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


@dataclass(frozen=True)
class Lease:
    doctor_id: int
    lease_id: str
    shared: bool  # granted by Redis; False: by this process's own count


def _new_lease_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"


class InProcessSlots:
    """Leases counted in this process: the embedded default, and the Redis fallback."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[int, set[str]] = {}

    def acquire(self, doctor_id: int, limit: int, ttl_seconds: float) -> Lease | None:
        with self._lock:
            held = self._leases.setdefault(doctor_id, set())
            if len(held) >= limit:
                if not held:
                    del self._leases[doctor_id]
                return None
            lease = Lease(doctor_id, _new_lease_id(), shared=False)
            held.add(lease.lease_id)
            return lease

    def renew(self, lease: Lease, ttl_seconds: float) -> None:
        """Nothing to renew: a process's own leases die with it."""

    def release(self, lease: Lease) -> None:
        with self._lock:
            held = self._leases.get(lease.doctor_id)
            if held is not None:
                held.discard(lease.lease_id)
                if not held:
                    del self._leases[lease.doctor_id]

    def count(self, doctor_id: int) -> int:
        with self._lock:
            return len(self._leases.get(doctor_id, ()))


class RedisSlots:
    """Leases in Redis, shared by every worker and instance on that Redis database."""

    def __init__(self, url: str):
        self.url = url
        self.local = InProcessSlots()
        self._client: redis.Redis | None = None
        self._pid: int | None = None
        self._scripts: dict[str, redis.commands.core.Script] = {}

    def _redis(self) -> redis.Redis:
        if self._client is None or self._pid != os.getpid():
            self._client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
            self._pid = os.getpid()
            self._scripts = {
                name: self._client.register_script(lua)
                for name, lua in (("acquire", ACQUIRE_LUA), ("renew", RENEW_LUA), ("count", COUNT_LUA))
            }
        return self._client

    def _script(self, name: str):
        self._redis()
        return self._scripts[name]

    @staticmethod
    def key(doctor_id: int) -> str:
        return f"{KEY_PREFIX}{doctor_id}"

    def acquire(self, doctor_id: int, limit: int, ttl_seconds: float) -> Lease | None:
        lease_id = _new_lease_id()
        try:
            granted, _count = self._script("acquire")(
                keys=[self.key(doctor_id)], args=[limit, int(ttl_seconds * 1000), lease_id]
            )
        except redis.RedisError:
            log.warning("stream limit: Redis unavailable, counting doctor %s in this process", doctor_id)
            return self.local.acquire(doctor_id, limit, ttl_seconds)
        return Lease(doctor_id, lease_id, shared=True) if granted else None

    def renew(self, lease: Lease, ttl_seconds: float) -> None:
        if not lease.shared:
            return
        try:
            self._script("renew")(
                keys=[self.key(lease.doctor_id)], args=[int(ttl_seconds * 1000), lease.lease_id]
            )
        except redis.RedisError:
            log.debug("stream lease %s not renewed: Redis unavailable", lease.lease_id)

    def release(self, lease: Lease) -> None:
        if not lease.shared:
            self.local.release(lease)
            return
        try:
            self._redis().zrem(self.key(lease.doctor_id), lease.lease_id)
        except redis.RedisError:
            log.info("stream lease %s not released (Redis unavailable); it will expire", lease.lease_id)

    def count(self, doctor_id: int) -> int:
        """Live shared leases of a doctor (plus this process's fallback ones)."""
        shared = self._script("count")(keys=[self.key(doctor_id)])
        return int(shared) + self.local.count(doctor_id)


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
