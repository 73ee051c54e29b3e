"""An HTTP load generator on gevent: closed loop (`run`) or open loop (`run_open`).

Closed loop: N keep-alive clients, each sending its next request as soon as the
previous answer is read; the figures are latency under N concurrent clients and the
throughput they achieve (so latency = N / throughput, by construction).
Open loop: requests arrive at a fixed rate whatever the answers do, on a pool of
keep-alive connections; latency is counted from the scheduled arrival, so a server
that falls behind cannot hide its backlog (no coordinated omission).
Requests that start during the warm-up are not counted (but their statuses are kept
in `all_statuses`, so a benchmark can check what it wrote against the database).

The generator shares the machine with the server: `client_cpu_percent` (CPU time of
this process / wall time of the run) tells whether the client itself was the limit.
Given the server's worker pids, `server_cpu_ms_per_request` is the CPU time the workers
spent during the measured window divided by the requests completed in it: what a
request costs the server, a figure other load on the machine barely moves.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import http.client  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import gevent  # noqa: E402

from bench.lib.processes import cpu_seconds, own_cpu_seconds  # noqa: E402

# (client index, request number) -> (method, path, body bytes or None, headers)
RequestFactory = Callable[[int, int], tuple[str, str, bytes | None, dict]]
MAX_ERROR_SAMPLES = 5
# An idle pooled connection older than this is dropped, not reused: gunicorn closes
# keep-alive connections idle for `keepalive` (5 s in gunicorn.conf.py).
MAX_IDLE_SECONDS = 3.0


@dataclass
class Result:
    duration: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    # Seconds after the end of the warm-up at which each counted request completed.
    completed_at: list[float] = field(default_factory=list)
    # Every answer, warm-up and tail included.
    all_statuses: Counter = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    client_cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    server_cpu_seconds: float | None = None

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index] * 1000

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    def per_second(self) -> list[int]:
        """Requests completed in each second of the measured window."""
        buckets = [0] * max(1, int(self.duration + 0.999))
        for moment in self.completed_at:
            buckets[min(len(buckets) - 1, max(0, int(moment)))] += 1
        return buckets

    def summary(self) -> dict:
        mean = sum(self.latencies) / len(self.latencies) * 1000 if self.latencies else float("nan")
        return {
            "requests": self.count,
            "errors": self.errors,
            "statuses": dict(self.statuses),
            "rps": round(self.count / self.duration, 1),
            "mean_ms": round(mean, 2),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(max(self.latencies) * 1000, 2) if self.latencies else float("nan"),
            "client_cpu_percent": round(100 * self.client_cpu_seconds / self.wall_seconds, 1)
            if self.wall_seconds
            else None,
            **(
                {"server_cpu_ms_per_request": round(1000 * self.server_cpu_seconds / self.count, 3)}
                if self.server_cpu_seconds is not None and self.count
                else {}
            ),
        }


def _sample_server_cpu(result: Result, pids: list[int], measure_from: float, stop: float) -> gevent.Greenlet:
    def sample() -> None:
        gevent.sleep(max(0.0, measure_from - time.perf_counter()))
        begin = cpu_seconds(pids)
        gevent.sleep(max(0.0, stop - time.perf_counter()))
        result.server_cpu_seconds = cpu_seconds(pids) - begin

    return gevent.spawn(sample)


def run(
    host: str,
    port: int,
    make_request: RequestFactory,
    *,
    concurrency: int = 50,
    duration: float = 10.0,
    warmup: float = 2.0,
    server_pids: list[int] | None = None,
) -> Result:
    start = time.perf_counter()
    cpu_start = own_cpu_seconds()
    measure_from = start + warmup
    stop = measure_from + duration
    result = Result(duration=duration)
    sampler = _sample_server_cpu(result, server_pids, measure_from, stop) if server_pids else None

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        number = 0
        while True:
            began = time.perf_counter()
            if began >= stop:
                break
            method, path, body, headers = make_request(index, number)
            number += 1
            body_text = b""
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                body_text = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as error:
                status = 0
                body_text = repr(error).encode()
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
            _record(result, status, method, path, body_text, began, time.perf_counter(), measure_from, stop)
        conn.close()

    gevent.joinall([gevent.spawn(client, i) for i in range(concurrency)])
    if sampler is not None:
        sampler.join()
    result.wall_seconds = time.perf_counter() - start
    result.client_cpu_seconds = own_cpu_seconds() - cpu_start
    return result


def run_open(
    host: str,
    port: int,
    make_request: RequestFactory,
    *,
    rate: float,
    duration: float = 10.0,
    warmup: float = 2.0,
    max_in_flight: int = 500,
    server_pids: list[int] | None = None,
) -> Result:
    """`rate` requests per second, evenly spaced, for warmup + duration seconds.

    Request k is scheduled at start + k / rate (the factory gets (k, k)); its latency
    runs from that moment to the end of its answer. An arrival finding `max_in_flight`
    requests unanswered is counted as status 0 (the server fell behind) rather than
    piling up without bound.
    """
    from gevent.queue import Empty, LifoQueue

    start = time.perf_counter()
    cpu_start = own_cpu_seconds()
    measure_from = start + warmup
    stop = measure_from + duration
    result = Result(duration=duration)
    idle: LifoQueue = LifoQueue()
    in_flight = 0
    sampler = _sample_server_cpu(result, server_pids, measure_from, stop) if server_pids else None

    def one(number: int, scheduled: float) -> None:
        nonlocal in_flight
        in_flight += 1
        conn = None
        while conn is None:
            try:
                conn, last_used = idle.get_nowait()
            except Empty:
                conn = http.client.HTTPConnection(host, port, timeout=30)
                break
            if time.perf_counter() - last_used > MAX_IDLE_SECONDS:
                conn.close()
                conn = None
        method, path, body, headers = make_request(number, number)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            body_text = response.read()
            status = response.status
            idle.put((conn, time.perf_counter()))
        except (OSError, http.client.HTTPException) as error:
            status, body_text = 0, repr(error).encode()
            conn.close()
        finally:
            in_flight -= 1
        _record(result, status, method, path, body_text, scheduled, time.perf_counter(), measure_from, stop)

    greenlets = []
    number = 0
    while True:
        scheduled = start + number / rate
        if scheduled >= stop:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        if in_flight >= max_in_flight:
            _record(result, 0, "-", "-", b"too many in flight", scheduled, scheduled, measure_from, stop)
        else:
            greenlets.append(gevent.spawn(one, number, scheduled))
        number += 1
    gevent.joinall(greenlets, timeout=60)
    if sampler is not None:
        sampler.join()
    while not idle.empty():
        idle.get()[0].close()
    result.wall_seconds = time.perf_counter() - start
    result.client_cpu_seconds = own_cpu_seconds() - cpu_start
    return result


def _record(result: Result, status, method, path, body_text, began, ended, measure_from, stop) -> None:
    """Count every answer; keep the latency of those that began in the measured window
    (and, closed loop, ended within 5 s of its end)."""
    result.all_statuses[status] += 1
    if not 200 <= status < 300 and len(result.error_samples) < MAX_ERROR_SAMPLES:
        result.error_samples.append(f"{status} {method} {path}: {body_text[:300].decode(errors='replace')}")
    if measure_from <= began < stop and ended <= stop + 5:
        result.latencies.append(ended - began)
        result.statuses[status] += 1
        result.completed_at.append(ended - measure_from)
