"""The per-doctor stream limit on its own: in process, and as Redis leases."""

from __future__ import annotations

import threading
import time

import redis

from hms.realtime.limiter import InProcessSlots, RedisSlots, StreamSlots, lease_ttl_seconds
from tests.conftest import free_port

# --- in process -------------------------------------------------------------------------


def test_in_process_limit_per_doctor_and_release():
    slots = InProcessSlots()
    leases = [slots.acquire(1, 3, 30) for _ in range(3)]
    assert all(leases)
    assert slots.acquire(1, 3, 30) is None  # the fourth
    assert slots.acquire(2, 3, 30) is not None  # another doctor has its own slots
    slots.release(leases[0])
    slots.release(leases[0])  # twice is harmless
    assert slots.count(1) == 2
    assert slots.acquire(1, 3, 30) is not None
    assert slots.acquire(1, 3, 30) is None


def test_in_process_limit_holds_under_concurrency():
    slots = InProcessSlots()
    granted = []
    barrier = threading.Barrier(40)

    def take():
        barrier.wait()
        granted.append(slots.acquire(7, 20, 30))

    threads = [threading.Thread(target=take) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for lease in granted if lease) == 20
    assert slots.count(7) == 20


def test_lease_lives_three_heartbeats():
    assert lease_ttl_seconds(15) == 45
    assert lease_ttl_seconds(1) == 3


def test_the_embedded_default_counts_in_process():
    from config import TestingConfig
    from hms import create_app

    config = TestingConfig()
    config.REDIS_URL = None
    assert isinstance(StreamSlots.get(create_app(config)), InProcessSlots)


# --- Redis ------------------------------------------------------------------------------


def test_redis_limit_holds_across_processes_and_concurrency(redis_url):
    # Separate RedisSlots objects stand for separate workers and instances.
    workers = [RedisSlots(redis_url) for _ in range(4)]
    granted = []
    barrier = threading.Barrier(40)

    def take(index: int):
        barrier.wait()
        granted.append(workers[index % 4].acquire(11, 20, 30))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    leases = [lease for lease in granted if lease]
    assert len(leases) == 20
    assert all(lease.shared for lease in leases)
    assert len({lease.lease_id for lease in leases}) == 20
    assert workers[0].count(11) == 20
    assert workers[1].acquire(11, 20, 30) is None
    workers[2].release(leases[0])  # any worker may release; the lease id is global
    assert workers[3].acquire(11, 20, 30) is not None


def test_redis_leases_of_a_crashed_worker_expire(redis_url):
    crashed, alive = RedisSlots(redis_url), RedisSlots(redis_url)
    for _ in range(3):
        assert crashed.acquire(12, 3, ttl_seconds=0.6)
    assert alive.acquire(12, 3, 0.6) is None
    time.sleep(0.8)  # nobody renews the crashed worker's leases
    assert alive.acquire(12, 3, 0.6) is not None
    assert alive.count(12) == 1


def test_redis_renewal_keeps_a_lease_alive(redis_url):
    slots = RedisSlots(redis_url)
    lease = slots.acquire(13, 1, ttl_seconds=0.6)
    for _ in range(4):
        time.sleep(0.3)
        slots.renew(lease, 0.6)
    assert slots.acquire(13, 1, 0.6) is None  # still held after 1.2 s, twice its TTL
    slots.release(lease)
    assert slots.acquire(13, 1, 0.6) is not None


def test_redis_lease_set_expires_with_its_last_lease(redis_url):
    slots = RedisSlots(redis_url)
    slots.acquire(14, 5, ttl_seconds=2)
    client = redis.Redis.from_url(redis_url)
    ttl_ms = client.pttl(RedisSlots.key(14))
    client.close()
    assert 0 < ttl_ms <= 2000  # no key outlives its leases


def test_redis_renewal_readds_a_lease_lost_with_a_restart(private_redis):
    slots = RedisSlots(private_redis.url)
    lease = slots.acquire(15, 2, ttl_seconds=30)
    private_redis.stop()
    private_redis.start()  # no persistence: every lease is gone
    assert slots.count(15) == 0
    slots.renew(lease, 30)
    assert slots.count(15) == 1  # an admitted stream stays counted


def test_redis_down_fails_open_to_a_local_count():
    slots = RedisSlots(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    leases = [slots.acquire(16, 2, 30) for _ in range(3)]
    assert leases[0] and leases[1] and leases[2] is None
    assert not leases[0].shared
    slots.renew(leases[0], 30)  # no error
    slots.release(leases[0])
    assert slots.local.count(16) == 1
    assert slots.acquire(16, 2, 30) is not None
