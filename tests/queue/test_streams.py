"""The live stream on a real gunicorn server with gevent workers, read by a real SSE client.

On the embedded default the server has one worker (in-process broker and limit); with
TEST_DATABASE_URL and TEST_REDIS_URL it has two, sharing PostgreSQL and Redis, and the
tests at the end run two instances and restart Redis under open streams.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
import requests

from tests.conftest import requires_postgres, run_server, token_for
from tests.queue.stream_helpers import booking, make_patient, open_stream, read_stream

HEARTBEAT = 1


@contextmanager
def sse_server(database_url: str, workers: int | None = None, **env):
    """gunicorn with a 1 s heartbeat and a small database pool (the test PostgreSQL is
    shared), plus any other settings given."""
    workers = workers or (2 if database_url.startswith("postgres") else 1)
    extra = {
        "SSE_HEARTBEAT_SECONDS": str(HEARTBEAT),
        "DB_POOL_SIZE": "2",
        "DB_MAX_OVERFLOW": "3",
        **{name: str(value) for name, value in env.items()},
    }
    with run_server(database_url, workers=workers, extra_env=extra) as base:
        yield base


def server_log(base: str) -> str:
    port = urlsplit(base).port
    return (Path(os.environ.get("TMPDIR", "/tmp")) / f"hms-live-{port}.log").read_text()


def master_pid(base: str) -> int:
    return int(re.search(r"Listening at: \S+ \((\d+)\)", server_log(base)).group(1))


def worker_pids(base: str) -> set[int]:
    return {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", server_log(base))}


@pytest.fixture
def people(app, make_user):
    """A doctor, a patient, and bearer tokens for reception and the doctor."""
    doctor = make_user("doctor", name="Meera Rao")
    reception = make_user("reception")

    class People:
        doctor_id = doctor.id
        patient_id = make_patient(app, "Asha Kumar")
        reception_token = token_for(app, reception)
        doctor_token = token_for(app, doctor)

        def book(self, base: str) -> requests.Response:
            return requests.post(
                f"{base}/api/appointments",
                json=booking(self.patient_id, self.doctor_id),
                headers={"Authorization": f"Bearer {self.reception_token}"},
                timeout=10,
            )

        def snapshot(self, base: str) -> dict:
            res = requests.get(
                f"{base}/api/queue/{self.doctor_id}",
                headers={"Authorization": f"Bearer {self.reception_token}"},
                timeout=10,
            )
            assert res.status_code == 200, res.text
            return res.json()

    return People()


# --- raw sockets: clients that vanish without a goodbye ----------------------------------


def raw_stream(base: str, doctor_id: int, token: str) -> socket.socket:
    """A stream over a bare socket, read up to its first event."""
    parts = urlsplit(base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(
        (
            f"GET /api/queue/{doctor_id}/stream HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    received = b""
    while b"event: queue" not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    return sock


def kill_socket(sock: socket.socket) -> None:
    """Drop the connection with a reset, as a crashed client or a dead network would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def accepted_within(base: str, doctor_id: int, token: str, seconds: float) -> tuple[requests.Response, float]:
    """Retry opening a stream until one is accepted; (its response, seconds it took)."""
    started = time.monotonic()
    while True:
        res = open_stream(base, doctor_id, token)
        if res.status_code == 200:
            return res, time.monotonic() - started
        assert res.status_code == 429, res.text
        res.close()
        assert time.monotonic() - started < seconds, f"no slot came back within {seconds} s"
        time.sleep(0.2)


# --- on every configuration -------------------------------------------------------------


def test_live_snapshot_first_then_changes_within_a_second(database_url, people):
    with sse_server(database_url) as base:
        expected = people.snapshot(base)
        reader = read_stream(open_stream(base, people.doctor_id, people.doctor_token))
        try:
            first = reader.next()
            assert first.retry == "3000" and first.event == "queue"
            assert first.id == str(expected["version"]) and json.loads(first.data) == expected
            assert reader.next(HEARTBEAT * 3).is_ping
            # Let a Redis subscriber finish connecting (it starts with the first stream).
            time.sleep(0.5)
            for _ in range(3):
                booked = people.book(base)
                committed = time.monotonic()  # the booking's response: it has committed
                assert booked.status_code == 201, booked.text
                event = reader.next_event(timeout=3)
                assert event.at - committed < 1.0
                assert booked.json()["id"] in [e["appointment_id"] for e in json.loads(event.data)["entries"]]
                assert int(event.id) == json.loads(event.data)["version"]
            assert int(event.id) == people.snapshot(base)["version"]
        finally:
            reader.close()


def test_live_last_event_id_gets_the_current_snapshot_at_once(database_url, people):
    # A long heartbeat: "at once" must not mean "at the next heartbeat".
    with sse_server(database_url, SSE_HEARTBEAT_SECONDS=30) as base:
        people.book(base)
        people.book(base)
        current = people.snapshot(base)
        started = time.monotonic()
        res = open_stream(
            base, people.doctor_id, people.doctor_token, **{"Last-Event-ID": str(current["version"] - 1)}
        )
        reader = read_stream(res)
        try:
            first = reader.next(5)
            assert first.at - started < 3
            assert first.id == str(current["version"]) and json.loads(first.data) == current
        finally:
            reader.close()


def test_live_headers_and_errors_before_streaming(database_url, people):
    with sse_server(database_url) as base:
        res = open_stream(base, people.doctor_id, people.doctor_token)
        try:
            assert res.headers["Content-Type"].startswith("text/event-stream")
            assert res.headers["Cache-Control"] == "no-cache"
            assert res.headers["X-Accel-Buffering"] == "no"
            assert "Content-Encoding" not in res.headers
        finally:
            res.close()
        missing = open_stream(base, 999999, people.doctor_token)
        assert missing.status_code == 404 and missing.json()["code"] == 404
        anonymous = open_stream(base, people.doctor_id)
        assert anonymous.status_code == 401 and anonymous.json()["code"] == 401


def test_live_a_demoted_account_s_open_stream_ends_at_the_next_heartbeat(
    app, database_url, make_user, people
):
    """A reception account demoted to display must not keep receiving names and MRNs."""
    account = make_user("reception")
    admin_token = token_for(app, make_user("admin"))
    with sse_server(database_url) as base:
        assert people.book(base).status_code == 201
        reader = read_stream(open_stream(base, people.doctor_id, token_for(app, account)))
        try:
            first = json.loads(reader.next_event().data)
            assert "mrn" in first["entries"][0]["patient"]  # the full form
            demoted = requests.patch(
                f"{base}/api/staff/{account.id}",
                json={"role": "display"},
                headers={"Authorization": f"Bearer {admin_token}"},
                timeout=10,
            )
            assert demoted.status_code == 200, demoted.text
            deadline = time.monotonic() + HEARTBEAT * 3
            while (block := reader.next(HEARTBEAT * 4)) is not None:
                assert block.data is None or "mrn" not in block.data
                assert time.monotonic() < deadline, "the stream outlived the demotion"
        finally:
            reader.close()


def test_live_limit_and_vanished_clients_free_their_slots(database_url, people):
    with sse_server(database_url, SSE_MAX_CONNECTIONS_PER_DOCTOR=3) as base:
        sockets = [raw_stream(base, people.doctor_id, people.reception_token) for _ in range(3)]
        over = open_stream(base, people.doctor_id, people.reception_token)
        assert over.status_code == 429
        assert over.headers["Content-Type"].startswith("application/json")
        assert over.json()["code"] == 429 and int(over.headers["Retry-After"]) >= 1
        # Another doctor's screens are not affected.
        other = open_stream(base, people.doctor_id + 1000, people.reception_token)
        assert other.status_code == 404
        for sock in sockets:
            kill_socket(sock)
        # Noticed at the next heartbeat write: the slots come back within a few heartbeats.
        replacements = []
        for _ in range(3):
            res, waited = accepted_within(
                base, people.doctor_id, people.reception_token, seconds=4 * HEARTBEAT + 2
            )
            replacements.append(res)
        assert open_stream(base, people.doctor_id, people.reception_token).status_code == 429
        for res in replacements:
            res.close()


def test_live_default_limit_is_20(database_url, people):
    # One account may hold SSE_MAX_CONNECTIONS_PER_ACCOUNT (10): raised here to reach 20.
    with sse_server(database_url, SSE_MAX_CONNECTIONS_PER_ACCOUNT=50) as base:
        streams = [open_stream(base, people.doctor_id, people.reception_token) for _ in range(20)]
        try:
            assert [res.status_code for res in streams] == [200] * 20
            over = open_stream(base, people.doctor_id, people.reception_token)
            assert over.status_code == 429 and over.json()["code"] == 429
        finally:
            for res in streams:
                res.close()
        res, _ = accepted_within(base, people.doctor_id, people.doctor_token, seconds=4 * HEARTBEAT + 2)
        res.close()


def test_live_shutdown_ends_streams_promptly(database_url, people):
    with sse_server(database_url) as base:
        readers = [read_stream(open_stream(base, people.doctor_id, people.doctor_token)) for _ in range(3)]
        for reader in readers:
            assert reader.next().event == "queue"
        started = time.monotonic()
        os.kill(master_pid(base), signal.SIGTERM)
        for reader in readers:
            assert reader.ended.wait(10), "a stream outlived the worker's shutdown"
        # Far inside gunicorn's graceful timeout (20 s): clients reconnect elsewhere at once.
        assert time.monotonic() - started < 5
        for reader in readers:
            blocks = []
            while (block := reader.next(1)) is not None:
                blocks.append(block)
            assert any("reconnect" in comment for block in blocks for comment in block.comments)


# --- PostgreSQL and Redis: several workers and instances -----------------------------


def subscriber_connections(redis_url: str) -> dict[int, int]:
    """pid -> number of queue-subscriber pub/sub connections, from Redis' CLIENT LIST."""
    client = redis.Redis.from_url(redis_url)
    try:
        counts: dict[int, int] = {}
        for connection in client.client_list(_type="pubsub"):
            match = re.fullmatch(r"hms-queue-subscriber-(\d+)-\d+", connection.get("name") or "")
            if match:
                counts[int(match.group(1))] = counts.get(int(match.group(1)), 0) + 1
        return counts
    finally:
        client.close()


@requires_postgres
def test_each_worker_holds_one_subscriber_connection_started_lazily(database_url, redis_url, people):
    with sse_server(database_url, workers=2, SSE_MAX_CONNECTIONS_PER_ACCOUNT=12) as base:
        people.snapshot(base)
        workers = worker_pids(base)
        assert len(workers) == 2
        assert not set(subscriber_connections(redis_url)) & workers  # none before a stream
        streams = [open_stream(base, people.doctor_id, people.doctor_token) for _ in range(12)]
        try:
            assert all(res.status_code == 200 for res in streams)
            time.sleep(1)
            counts = {pid: n for pid, n in subscriber_connections(redis_url).items() if pid in workers}
            assert counts and set(counts.values()) == {1}  # one per worker, however many streams
        finally:
            for res in streams:
                res.close()


@requires_postgres
def test_two_instances_share_changes_and_the_limit(database_url, redis_url, people):
    with ExitStack() as stack:
        first = stack.enter_context(sse_server(database_url, SSE_MAX_CONNECTIONS_PER_DOCTOR=3))
        second = stack.enter_context(sse_server(database_url, SSE_MAX_CONNECTIONS_PER_DOCTOR=3))
        reader = read_stream(open_stream(second, people.doctor_id, people.reception_token))
        try:
            reader.next_event()
            time.sleep(0.5)  # the subscriber connects with the first stream
            assert people.book(first).status_code == 201  # booked on the first instance
            committed = time.monotonic()
            event = reader.next_event(timeout=3)
            assert event.at - committed < 1.0  # reaches a stream on the second
            assert json.loads(event.data) == people.snapshot(first) == people.snapshot(second)
            # The limit of 3 counts both instances: one stream on the second, two here.
            extra = [open_stream(first, people.doctor_id, people.reception_token) for _ in range(2)]
            assert [res.status_code for res in extra] == [200, 200]
            assert open_stream(first, people.doctor_id, people.reception_token).status_code == 429
            assert open_stream(second, people.doctor_id, people.reception_token).status_code == 429
            for res in extra:
                res.close()
        finally:
            reader.close()


@requires_postgres
def test_redis_restart_under_open_streams(database_url, private_redis, people):
    with sse_server(database_url, REDIS_URL=private_redis.url) as base:
        readers = [read_stream(open_stream(base, people.doctor_id, people.doctor_token)) for _ in range(4)]
        try:
            for reader in readers:
                assert reader.next().event == "queue"
            time.sleep(0.5)
            private_redis.stop()
            outage_started = time.monotonic()
            # REST keeps answering and a booking still commits.
            booked = people.book(base)
            assert booked.status_code == 201, booked.text
            during = people.snapshot(base)
            assert booked.json()["id"] in [e["appointment_id"] for e in during["entries"]]
            ready = requests.get(f"{base}/readyz", timeout=5)
            assert ready.status_code == 503 and ready.json()["redis"] == "unavailable"
            # Open streams keep their heartbeats through the outage.
            for reader in readers:
                pings = 0
                while time.monotonic() - outage_started < 3 * HEARTBEAT + 1 and pings < 2:
                    block = reader.next(3 * HEARTBEAT)
                    assert block is not None, "a stream ended during the Redis outage"
                    pings += block.is_ping
                assert pings >= 2
            private_redis.start()
            # After the subscriber reconnects, every stream gets a fresh snapshot.
            for reader in readers:
                event = reader.next_event(timeout=10)
                while int(event.id) < during["version"]:
                    event = reader.next_event(timeout=10)
                assert json.loads(event.data)["version"] == during["version"]
            # And changes flow over Redis again.
            assert people.book(base).status_code == 201
            after = people.snapshot(base)["version"]
            for reader in readers:
                event = reader.next_event(timeout=3)
                while int(event.id) < after:
                    event = reader.next_event(timeout=3)
                assert int(event.id) == after
        finally:
            for reader in readers:
                reader.close()


@requires_postgres
def test_open_streams_hold_no_database_connection(database_url, people):
    # One pooled connection per worker, no overflow: streams that kept theirs would
    # starve every other request (pool_timeout) and show as "idle in transaction".
    with sse_server(database_url, workers=2, DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0) as base:
        readers = [read_stream(open_stream(base, people.doctor_id, people.doctor_token)) for _ in range(10)]
        try:
            for reader in readers:
                assert reader.next().event == "queue"
            time.sleep(0.5)
            for _ in range(3):
                started = time.monotonic()
                assert people.book(base).status_code == 201
                current = people.snapshot(base)["version"]
                assert time.monotonic() - started < 2
                for reader in readers:
                    event = reader.next_event(timeout=3)
                    while int(event.id) < current:
                        event = reader.next_event(timeout=3)
            with psycopg.connect(database_url, autocommit=True) as conn:
                busy = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state LIKE 'idle in transaction%'"
                ).fetchone()[0]
            assert busy == 0
        finally:
            for reader in readers:
                reader.close()
