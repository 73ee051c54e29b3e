"""X-Request-ID: on every answer (the client's when sane, else a new one), and on the log
records of the request."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time

import pytest

from hms.core.requestid import RequestIdFilter, _send_request_id
from tests.conftest import ROOT

NEW_ID = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("GET", "/api/auth/me"),  # 401
        ("GET", "/api/no-such-thing"),  # 404
        ("POST", "/healthz"),  # 405
        ("GET", "/api/patients?page=0"),  # 401 before 422
        ("GET", "/login"),  # a page
        ("GET", "/static/hms.css"),
        ("GET", "/api/openapi.json"),
        ("HEAD", "/healthz"),
        ("GET", "/api/tickets/forged"),  # the ticket's 404
    ],
)
def test_every_answer_echoes_a_sane_request_id(client, method, path):
    res = client.open(path, method=method, headers={"X-Request-ID": "req-42.a:b_C"})
    assert res.headers["X-Request-ID"] == "req-42.a:b_C"


def test_errors_and_streams_carry_it_too(app, reception, make_user):
    doctor = make_user("doctor")
    res = reception.post(
        "/api/patients", data="{bad json", headers={"X-Request-ID": "r1", "Content-Type": "application/json"}
    )
    assert res.status_code == 400 and res.headers["X-Request-ID"] == "r1"
    res = reception.get("/api/patients?limit=0", headers={"X-Request-ID": "r2"})
    assert res.status_code == 422 and res.headers["X-Request-ID"] == "r2"
    res = reception.get(f"/api/queue/{doctor.id}/stream", headers={"X-Request-ID": "r3"}, buffered=False)
    try:
        assert res.mimetype == "text/event-stream" and res.headers["X-Request-ID"] == "r3"
    finally:
        res.close()


@pytest.mark.parametrize(
    "given", ["", "a b", "x" * 129, "<script>", "id\tx", "ünï", "a,b", "a;b=c", '"quoted"']
)
def test_an_insane_request_id_is_replaced_by_a_new_one(client, given):
    res = client.get("/healthz", headers={"X-Request-ID": given})
    assert NEW_ID.fullmatch(res.headers["X-Request-ID"])


def test_the_longest_sane_id_is_kept_and_new_ones_differ(client):
    assert client.get("/healthz", headers={"X-Request-ID": "y" * 128}).headers["X-Request-ID"] == "y" * 128
    drawn = {client.get("/healthz").headers["X-Request-ID"] for _ in range(5)}
    assert len(drawn) == 5 and all(NEW_ID.fullmatch(rid) for rid in drawn)


def test_the_filter_stamps_records_in_and_outside_a_request(app):
    def record() -> logging.LogRecord:
        return logging.LogRecord("hms.x", logging.INFO, __file__, 1, "hello", None, None)

    outside = record()
    assert RequestIdFilter().filter(outside) and outside.request_id == "-"
    with app.test_request_context("/", headers={"X-Request-ID": "abc"}):
        inside = record()
        RequestIdFilter().filter(inside)
        response = _send_request_id(app.response_class("x"))
    assert inside.request_id == "abc" == response.headers["X-Request-ID"]


SCRIPT = """
import logging, sys
from hms import create_app
app = create_app()
with app.test_request_context("/", headers={"X-Request-ID": "from-client-7"}):
    logging.getLogger("hms.queue.changes").warning("in a request")
logging.getLogger("hms.queue.changes").warning("outside")
client = app.test_client()
res = client.get("/api/no-such-thing")
with app.test_request_context("/"):
    app.preprocess_request()
    logging.getLogger("hms").warning("drawn")
    from flask import g
    print("DRAWN", g.request_id)
"""


def test_the_app_s_log_lines_carry_the_request_id(tmp_path):
    """The app factory's logging (not testing, not debug): each line shows the request id."""
    env = {
        **os.environ,
        "HMS_ENV": "development",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any("[from-client-7]: in a request" in line for line in lines), lines
    assert any("[-]: outside" in line for line in lines), lines
    drawn = done.stdout.split("DRAWN ")[1].strip()
    assert NEW_ID.fullmatch(drawn)
    assert any(f"[{drawn}]: drawn" in line for line in lines), lines


def test_it_costs_a_few_microseconds(app):
    """Drawing a new id and sending it: about 4-6 us on a busy 2-core test machine (the
    best of 5 runs); the bound leaves room for a slower one."""
    from flask import g

    with app.test_request_context("/", headers={"X-Request-ID": "not sane!"}):
        request_g, response = g._get_current_object(), app.response_class("x")
        rounds, runs = 5000, []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(rounds):
                request_g.__dict__.pop("request_id", None)
                _send_request_id(response)
                response.headers.remove("X-Request-ID")
            runs.append((time.perf_counter() - started) / rounds)
        per_call = min(runs)
    assert per_call < 20e-6, per_call
