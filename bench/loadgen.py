"""A closed-loop HTTP load generator: N keep-alive clients on gevent for a fixed time.

Each client sends its next request as soon as the previous answer is read, so the
figures are latency under N concurrent clients and the throughput they achieve.
Requests that start during the warm-up are not counted.
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

# (client index, request number) -> (method, path, body bytes or None, headers)
RequestFactory = Callable[[int, int], tuple[str, str, bytes | None, dict]]


@dataclass
class Result:
    duration: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)

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

    def summary(self) -> dict:
        return {
            "requests": self.count,
            "errors": self.errors,
            "statuses": dict(self.statuses),
            "rps": round(self.count / self.duration, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
        }


def run(
    host: str,
    port: int,
    make_request: RequestFactory,
    *,
    concurrency: int = 50,
    duration: float = 10.0,
    warmup: float = 2.0,
) -> Result:
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + duration
    result = Result(duration=duration)

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        number = 0
        while True:
            began = time.perf_counter()
            if began >= stop:
                break
            method, path, body, headers = make_request(index, number)
            number += 1
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
            ended = time.perf_counter()
            if began >= measure_from and ended <= stop + 5:
                result.latencies.append(ended - began)
                result.statuses[status] += 1
        conn.close()

    gevent.joinall([gevent.spawn(client, i) for i in range(concurrency)])
    return result
