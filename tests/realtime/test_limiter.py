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
    time.sleep(0.45)
    assert alive.acquire(12, 3, 0.6) is None  # renewed by the batch renewer meanwhile
    crashed.stop()  # the worker dies, and its renewer with it
    time.sleep(0.8)  # nobody renews the crashed worker's leases
    assert alive.acquire(12, 3, 0.6) is not None
    assert alive.count(12) == 1


def test_redis_batched_renewal_keeps_every_lease_of_the_process_alive(redis_url):
    slots, other = RedisSlots(redis_url), RedisSlots(redis_url)
    leases = [slots.acquire(doctor, 5, ttl_seconds=0.6) for doctor in (21, 22, 23) for _ in range(5)]
    assert all(lease.shared for lease in leases) and slots.held() == 15
    time.sleep(1.5)  # 2.5 TTLs: alive only if renewed
    assert [other.count(doctor) for doctor in (21, 22, 23)] == [5, 5, 5]
    assert other.acquire(22, 5, 0.6) is None
    # One renewal call per heartbeat tick (TTL / 3) for all 15 leases, not one per lease.
    assert 4 <= slots.renewals <= 10
    assert slots.renew_all() == 15


def test_redis_batched_renewal_spans_several_calls(redis_url, monkeypatch):
    monkeypatch.setattr("hms.realtime.limiter.RENEW_BATCH", 4)
    slots = RedisSlots(redis_url)
    held = [slots.acquire(doctor, 5, ttl_seconds=30) for doctor in (24, 25, 26) for _ in range(3)]
    calls = []  # the renewer's first tick is 10 s away: renew_all below is the only call
    script = slots._script

    def counting(name):
        calls.append(name)
        return script(name)

    monkeypatch.setattr(slots, "_script", counting)
    client = redis.Redis.from_url(redis_url)
    keys = [RedisSlots.key(doctor) for doctor in (24, 25, 26)]
    client.delete(*keys)  # as after a Redis restart: every lease is gone
    assert slots.renew_all() == 9
    assert calls == ["renew_many", "renew_many"]  # whole doctors, up to 4+ leases a call
    assert [slots.count(doctor) for doctor in (24, 25, 26)] == [3, 3, 3]  # re-added
    assert all(0 < client.pttl(key) <= 30_000 for key in keys)
    for lease in held:
        slots.release(lease)
    assert slots.held() == 0
    client.close()


def test_redis_released_leases_are_no_longer_renewed(redis_url):
    slots = RedisSlots(redis_url)
    lease = slots.acquire(27, 2, ttl_seconds=0.6)
    slots.release(lease)
    assert slots.held() == 0 and slots.renew_all() == 0
    assert slots.count(27) == 0
    time.sleep(0.5)
    assert slots._renewer is None  # the renewer stops with the process's last lease


def test_redis_renewal_keeps_a_lease_alive(redis_url):
    slots = RedisSlots(redis_url)
    lease = slots.acquire(13, 1, ttl_seconds=0.6)
    for _ in range(4):
        time.sleep(0.3)
        slots.renew_all()
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
    slots.acquire(15, 2, ttl_seconds=30)
    private_redis.stop()
    private_redis.start()  # no persistence: every lease is gone
    assert slots.count(15) == 0
    slots.renew_all()
    assert slots.count(15) == 1  # an admitted stream stays counted


def test_redis_down_fails_open_to_a_local_count():
    slots = RedisSlots(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    leases = [slots.acquire(16, 2, 30) for _ in range(3)]
    assert leases[0] and leases[1] and leases[2] is None
    assert not leases[0].shared
    assert slots.renew_all() == 0  # a local lease: nothing shared to renew, no error
    slots.release(leases[0])
    assert slots.local.count(16) == 1
    assert slots.acquire(16, 2, 30) is not None


def test_redis_releases_at_once_go_out_together(redis_url, monkeypatch):
    slots = RedisSlots(redis_url)
    leases = [slots.acquire(28, 30, ttl_seconds=30) for _ in range(20)]
    removed_batches = []
    remove = slots._remove

    def slow_remove(batch):
        removed_batches.append(len(batch))
        time.sleep(0.2)  # a round trip under load: releases pile up meanwhile
        remove(batch)

    monkeypatch.setattr(slots, "_remove", slow_remove)
    barrier = threading.Barrier(20)

    def close(lease):
        barrier.wait()
        slots.release(lease)

    threads = [threading.Thread(target=close, args=(lease,)) for lease in leases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 3
    while slots.count(28) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert slots.count(28) == 0 and slots.held() == 0
    assert sum(removed_batches) == 20
    assert len(removed_batches) <= 3  # not one round trip per lease


def test_redis_a_lease_released_during_a_renewal_stays_released(redis_url, monkeypatch):
    slots = RedisSlots(redis_url)
    lease = slots.acquire(29, 2, ttl_seconds=30)
    script = slots._script
    in_renewal = threading.Event()

    def slow_script(name):
        run = script(name)
        if name != "renew_many":
            return run

        def delayed(**kwargs):
            in_renewal.set()
            time.sleep(0.3)  # the release below happens while this renewal is on its way
            return run(**kwargs)

        return delayed

    monkeypatch.setattr(slots, "_script", slow_script)
    renewal = threading.Thread(target=slots.renew_all)
    renewal.start()
    assert in_renewal.wait(2)
    slots.release(lease)
    renewal.join()
    assert slots.count(29) == 0  # the renewal did not bring it back


# --- several limits on one lease (e.g. per topic and per account) ------------------------


def _several_limits(slots):
    # Topic 31 limited to 5, and a second topic ("account:a") limited to 3 across topics.
    first = [slots.acquire(31, 5, 30, also=(("account:a", 3),)) for _ in range(2)]
    third = slots.acquire(32, 5, 30, also=(("account:a", 3),))
    assert all(first) and third
    assert slots.acquire(33, 5, 30, also=(("account:a", 3),)) is None  # the account is full
    assert slots.count(33) == 0  # a refused lease counts nowhere
    assert slots.acquire(31, 5, 30, also=(("account:b", 3),))  # another account is not
    assert slots.count(31) == 3 and slots.count("account:a") == 3
    slots.release(third)
    assert slots.count(32) == 0 and slots.count("account:a") == 2
    assert slots.acquire(33, 5, 30, also=(("account:a", 3),))


def _counted_but_not_limited(slots):
    held = [slots.acquire(34, 2, 30) for _ in range(2)]
    assert all(held) and slots.acquire(34, 2, 30) is None
    # A limit of None: the lease counts in topic 34 (it is watched) but is never refused there.
    own = slots.acquire(34, None, 30, also=(("account:own", 2),))
    assert own and slots.count(34) == 3
    assert slots.acquire(34, 2, 30) is None  # the others are still refused
    assert slots.acquire(34, None, 30, also=(("account:own", 2),))
    assert slots.acquire(34, None, 30, also=(("account:own", 2),)) is None  # its own cap holds


def test_in_process_several_limits_on_one_lease():
    _several_limits(InProcessSlots())


def test_in_process_a_topic_counted_but_not_limited():
    _counted_but_not_limited(InProcessSlots())


def test_redis_several_limits_on_one_lease(redis_url):
    _several_limits(RedisSlots(redis_url))


def test_redis_a_topic_counted_but_not_limited(redis_url):
    _counted_but_not_limited(RedisSlots(redis_url))


def test_redis_several_limits_hold_across_workers_and_concurrency(redis_url):
    workers = [RedisSlots(redis_url) for _ in range(4)]
    granted = []
    barrier = threading.Barrier(40)

    def take(index: int):
        barrier.wait()
        granted.append(workers[index % 4].acquire(40 + index % 8, 100, 30, also=(("account:z", 10),)))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for lease in granted if lease) == 10
    assert workers[0].count("account:z") == 10


# --- a reconnect taking over its own stale lease ---------------------------------------------

OWNER, OTHER = "account:1", "account:2"


def _claims(limit: int):
    return ((5, limit), (f"{OWNER}-cap", None))


def _check_takeover(slots):
    # `first` expires a second before `second`: the stalest lease whatever the clock's
    # resolution (two claims in the same millisecond would tie, and the tie is random).
    first = slots.claim(((5, 2),), 29, owner=OWNER)
    second = slots.claim(((5, 2),), 30, owner=OWNER)
    assert first.refused_by is None and second.refused_by is None
    assert first.lease_id.startswith(OWNER + "|")
    # Full: a fresh connection, and another owner's reconnect, are refused.
    assert slots.claim(((5, 2),), 30, owner=OWNER).refused_by == 5
    assert slots.claim(((5, 2),), 30, owner=OTHER, take_over=True).refused_by == 5
    assert slots.take_displaced() == set()
    # The owner's reconnect takes over its stalest lease, in every topic that lease counts in.
    third = slots.claim(((5, 2),), 30, owner=OWNER, take_over=True)
    assert third.refused_by is None
    assert slots.count(5) == 2
    return first, second, third


def test_in_process_a_reconnect_takes_over_its_owners_oldest_lease():
    slots = InProcessSlots()
    first, _, _ = _check_takeover(slots)
    assert slots.take_displaced() == {first.lease_id}
    assert slots.take_displaced() == set()  # handed out once


def test_in_process_takeover_frees_every_topic_of_the_displaced_lease():
    slots = InProcessSlots()
    held = slots.claim(((5, 1), ("account:1", 1)), 30, owner=OWNER)
    assert held.refused_by is None
    # Full on both limits: the takeover frees both.
    again = slots.claim(((5, 1), ("account:1", 1)), 30, owner=OWNER, take_over=True)
    assert again.refused_by is None
    assert slots.count(5) == 1 and slots.count("account:1") == 1
    assert slots.take_displaced() == {held.lease_id}


def test_in_process_no_takeover_of_a_lease_for_another_topic():
    slots = InProcessSlots()
    slots.claim(((6, 1), ("account:1", 1)), 30, owner=OWNER)  # the account's one stream, doctor 6
    # The account cap is full; its reconnect for doctor 5 has no stale lease of doctor 5.
    assert slots.claim(((5, 3), ("account:1", 1)), 30, owner=OWNER, take_over=True).refused_by == "account:1"


def test_redis_a_reconnect_takes_over_and_the_owner_worker_does_not_renew_it_back(redis_url):
    owner_worker, other_worker = RedisSlots(redis_url), RedisSlots(redis_url)
    first = owner_worker.claim(((5, 2),), 29, owner=OWNER)  # the stalest: expires first
    second = owner_worker.claim(((5, 2),), 30, owner=OWNER)
    assert first.refused_by is None and second.refused_by is None
    assert other_worker.claim(((5, 2),), 30, owner=OTHER, take_over=True).refused_by == 5
    third = other_worker.claim(((5, 2),), 30, owner=OWNER, take_over=True)  # on another worker
    assert third.refused_by is None
    assert other_worker.count(5) == 2
    # The stalest lease went (the earliest expiry: `first`); the worker that holds it
    # learns at its next renewal, which must not put it back.
    assert owner_worker.take_displaced() == set()
    owner_worker.renew_all()
    assert owner_worker.take_displaced() == {first.lease_id}
    assert owner_worker.held() == 1
    owner_worker.renew_all()
    assert other_worker.count(5) == 2
    members = {m.decode() for m in redis.Redis.from_url(redis_url).zrange(RedisSlots.key(5), 0, -1)}
    assert members == {second.lease_id, third.lease_id}


def test_redis_a_takeover_on_the_same_worker_is_reported_at_once(redis_url):
    worker = RedisSlots(redis_url)
    first, _, _ = _check_takeover(worker)
    assert worker.take_displaced() == {first.lease_id}
    assert worker.held() == 2
