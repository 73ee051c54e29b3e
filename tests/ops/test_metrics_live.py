"""GET /metrics from real gunicorn workers: every worker's counts in one scrape, and a
dead worker's live gauges dropped (two workers with Redis, else the embedded default's
one)."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.conftest import run_server
from tests.ops.test_metrics import parse, value


def _scrape(base: str):
    res = requests.get(base + "/metrics", timeout=10)
    assert res.status_code == 200, res.text
    return parse(res.text)


def _worker_pids(samples) -> set[str]:
    return {dict(labels)["pid"] for name, labels in samples if name == "process_resident_memory_bytes"}


def _wait_for(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    return condition()


def test_every_worker_is_in_one_scrape_and_a_dead_one_leaves(app, database_url, tmp_path):
    workers = 2 if os.environ.get("TEST_REDIS_URL") else 1  # several workers need Redis
    with run_server(
        database_url, workers=workers, extra_env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    ) as base:
        pids = _wait_for(lambda: len(_worker_pids(_scrape(base))) == workers and _worker_pids(_scrape(base)))
        assert len(pids) == workers

        def hit(_):
            # A new connection each time, so the requests spread over the workers.
            return requests.get(base + "/healthz", headers={"Connection": "close"}, timeout=10).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(hit, range(60))) == {200}
        route = {"route": "/healthz", "method": "GET", "status": "200"}
        for _ in range(4):  # each scrape is answered by any worker, and counts them all
            samples = _scrape(base)
            assert value(samples, "hms_http_requests_total", **route) >= 60  # the start-up probes too
            assert value(samples, "hms_http_requests_in_flight") >= 1
        counted = value(samples, "hms_http_requests_total", **route)
        assert set(os.listdir(tmp_path)) >= {f"gauge_livesum_{pid}.db" for pid in pids}

        dead = sorted(pids)[0]
        os.kill(int(dead), signal.SIGKILL)
        replaced = _wait_for(
            lambda: (now := _worker_pids(_scrape(base))) and dead not in now and len(now) == workers
        )
        assert replaced, "the killed worker is still reported"
        assert f"gauge_livesum_{dead}.db" not in os.listdir(tmp_path)
        assert value(_scrape(base), "hms_http_requests_total", **route) >= counted  # its counts stay
