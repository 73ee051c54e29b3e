"""Log lines: one per request, JSON or text, with the request id; the slow-query log;
Sentry only when SENTRY_DSN is set, and then without patient data."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from config import DevelopmentConfig, ProductionConfig
from config import TestingConfig as _TestingConfig
from hms.core.errorreport import scrub
from hms.core.logs import log_formatter
from hms.core.requestid import RequestIdFilter
from tests.queue.stream_helpers import make_patient

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def log_lines():
    """The app's log lines of the test, as the root handler would write them in `kind`."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def lines(kind: str = "json") -> list:
        handler.setFormatter(log_formatter(kind))
        return stream

    yield lines
    root.removeHandler(handler)
    root.setLevel(old_level)


def _json_lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_one_json_line_per_request(app, reception, log_lines):
    stream = log_lines("json")
    patient_id = make_patient(app, "Zed Quux")
    res = reception.get(f"/api/patients/{patient_id}?fields=x")
    lines = [line for line in _json_lines(stream) if line["logger"] == "hms.request"]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == res.headers["X-Request-ID"]
    assert line["method"] == "GET"
    assert line["route"] == "/api/patients/<id:patient_id>"
    assert line["status"] == res.status_code
    assert line["account_id"] == reception.user.id
    assert line["pid"] == os.getpid()
    assert line["duration_ms"] >= 0
    assert line["level"] == "INFO" and line["time"].endswith("+00:00")
    text = stream.getvalue()
    assert "Zed" not in text and "Quux" not in text and "fields=" not in text


def test_the_request_id_comes_in_and_goes_out(client, log_lines):
    stream = log_lines("json")
    res = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a9c"})
    assert res.headers["X-Request-ID"] == "lb-7f3a9c"
    (line,) = [line for line in _json_lines(stream) if line["logger"] == "hms.request"]
    assert line["request_id"] == "lb-7f3a9c" and line["account_id"] is None


def test_slow_query_log_has_the_sql_and_request_id_but_no_parameters(app, reception, log_lines, monkeypatch):
    stream = log_lines("json")
    make_patient(app, "Zed Quux")
    monkeypatch.setitem(app.config, "SLOW_QUERY_MS", 0)
    res = reception.get("/api/patients?q=Quux")
    monkeypatch.setitem(app.config, "SLOW_QUERY_MS", 1e9)
    assert res.status_code == 200 and res.get_json()["data"][0]["name"] == "Zed Quux"
    slow = [line for line in _json_lines(stream) if line["logger"] == "hms.slowquery"]
    assert slow, "no slow-query line"
    assert {line["request_id"] for line in slow} == {res.headers["X-Request-ID"]}
    search = [line for line in slow if "patients" in line["sql"] and line["kind"] == "SELECT"]
    assert search
    assert all(line["duration_ms"] >= 0 and line["sql"] in line["message"] for line in slow)
    assert "Quux" not in stream.getvalue() and "quux" not in stream.getvalue()


def test_text_format_shows_the_request_id(client, log_lines):
    stream = log_lines("text")
    res = client.get("/healthz")
    line = next(line for line in stream.getvalue().splitlines() if "hms.request" in line)
    assert f"[{res.headers['X-Request-ID']}]" in line
    assert " INFO hms.request " in line and "GET /healthz 200 " in line and "account=-" in line


def test_log_format_defaults_and_choice(monkeypatch):
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.setenv("DATABASE_URL", "sqlite://")
    assert DevelopmentConfig().LOG_FORMAT == "text"
    assert ProductionConfig().LOG_FORMAT == "json"
    monkeypatch.setenv("LOG_FORMAT", "TEXT")
    assert ProductionConfig().LOG_FORMAT == "text"
    monkeypatch.setenv("LOG_FORMAT", "xml")
    from hms import create_app

    with pytest.raises(RuntimeError, match="LOG_FORMAT"):
        create_app(_TestingConfig())


def test_slow_query_threshold_setting(monkeypatch):
    monkeypatch.delenv("SLOW_QUERY_MS", raising=False)
    assert DevelopmentConfig().SLOW_QUERY_MS == 100
    monkeypatch.setenv("SLOW_QUERY_MS", "250")
    assert DevelopmentConfig().SLOW_QUERY_MS == 250


# --- Sentry -------------------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SENTRY_DSN", "PROMETHEUS_MULTIPROC_DIR")
    }
    env["TEST_DATABASE_URL"] = "sqlite://"
    env.pop("TEST_REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sentry_is_not_imported_without_a_dsn():
    done = _python(
        """
        import sys
        from config import DevelopmentConfig
        from hms import create_app
        app = create_app(DevelopmentConfig())
        app.test_client().get("/healthz")
        assert "sentry_sdk" not in sys.modules, "sentry_sdk imported"
        print("clean")
        """
    )
    assert done.returncode == 0 and "clean" in done.stdout, done.stderr


def test_sentry_gets_unhandled_errors_without_patient_data():
    done = _python(
        """
        import json, sys
        import sentry_sdk
        sent = []
        real_init = sentry_sdk.init
        def init(*args, **kwargs):
            kwargs["transport"] = lambda event: sent.append(event)  # nothing leaves the process
            return real_init(*args, **kwargs)
        sentry_sdk.init = init

        from config import TestingConfig
        from hms import create_app
        from hms.core.access import public

        config = TestingConfig()
        config.SENTRY_DSN = "https://public@o0.ingest.invalid/1"
        app = create_app(config)

        @public
        def broken(patient):
            raise ValueError(f"cannot bill Zed Quux ({patient})")

        app.add_url_rule("/boom/<patient>", "boom", broken)
        res = app.test_client().get(
            "/boom/Zed-Quux?name=Zed+Quux", headers={"Cookie": "s=Quux", "X-Request-ID": "req-42"}
        )
        assert res.status_code == 500, res.status_code
        sentry_sdk.flush()
        assert len(sent) == 1, sent
        event = sent[0]
        text = json.dumps(event, default=str)
        assert "Zed" not in text and "Quux" not in text, text
        assert event["exception"]["values"][0]["type"] == "ValueError"
        assert event["tags"]["request_id"] == "req-42"
        assert event["request"] == {"method": "GET"}
        assert event.get("transaction") == "/boom/<patient>", event.get("transaction")
        print("scrubbed")
        """
    )
    assert done.returncode == 0 and "scrubbed" in done.stdout, done.stderr[-3000:]


def test_scrub_keeps_the_method_only():
    event = {
        "request": {
            "method": "POST",
            "url": "http://x/api/patients/7",
            "query_string": "q=Zed",
            "data": "{}",
        },
        "user": {"id": 3},
        "breadcrumbs": {"values": [{"message": "Zed"}]},
        "extra": {"x": 1},
        "exception": {
            "values": [{"type": "E", "value": "Zed", "stacktrace": {"frames": [{"vars": {"a": 1}}]}}]
        },
    }
    scrubbed = scrub(event)
    assert scrubbed["request"] == {"method": "POST"}
    assert "user" not in scrubbed and "breadcrumbs" not in scrubbed and "extra" not in scrubbed
    assert scrubbed["exception"]["values"][0]["value"] == ""
    assert "vars" not in scrubbed["exception"]["values"][0]["stacktrace"]["frames"][0]
