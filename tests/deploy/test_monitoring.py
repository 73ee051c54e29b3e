"""deploy/prometheus and deploy/grafana: valid files whose expressions name HMS's metrics.

The metric names (and the labels a selector uses) are checked against hms.core.metrics
when that module exists, else against the names agreed for issue 16 (NAMES below).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
HISTOGRAM = "histogram"
# Series Prometheus itself makes: every target's `up`, the blackbox exporter's probe.
PROMETHEUS_OWN = {"up": (), "probe_success": ()}
ALWAYS_LABELS = {"job", "instance", "pid"}
EXPECTED_ALERTS = {
    "HMSDown",
    "HMSHighErrorRate",
    "HMSSlowResponses",
    "HMSDatabasePoolWaits",
    "HMSStreamsNearDoctorLimit",
    "HMSRedisDown",
    "HMSRateLimited",
    "HMSMemoryHigh",
}


def known_series() -> dict[str, set[str]]:
    """Every series name an expression may use, with the labels it may select on."""
    from prometheus_client.metrics import MetricWrapperBase

    from hms.core import metrics

    # The worker collector's process_* series, then every metric hms.core.metrics defines.
    names = {"process_resident_memory_bytes": (), "process_open_fds": ()}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            suffix = "_total" if value._type == "counter" else ""
            kind = (HISTOGRAM,) if value._type == "histogram" else ()
            names[value._name + suffix] = (*kind, *value._labelnames)
    series: dict[str, set[str]] = {}
    for name, spec in {**names, **PROMETHEUS_OWN}.items():
        labels = {label for label in spec if label != HISTOGRAM} | ALWAYS_LABELS
        if spec[:1] == (HISTOGRAM,):
            series[name + "_bucket"] = labels | {"le"}
            series[name + "_count"] = labels
            series[name + "_sum"] = labels
        else:
            series[name] = labels
    return series


SELECTOR = re.compile(r"\b((?:hms|process)_[a-z0-9_]+|up|probe_success)\b(\{[^}]*\})?")


def check_expression(expr: str, series: dict[str, set[str]]) -> list[str]:
    """What is wrong with an expression's metric names and selector labels ([] when nothing)."""
    found = SELECTOR.findall(expr)
    if not found:
        return [f"no HMS metric in {expr!r}"]
    problems = []
    for name, selector in found:
        if name not in series:
            problems.append(f"unknown metric {name}")
            continue
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector):
            if label not in series[name]:
                problems.append(f"{name} has no label {label}")
    # `sum by (label)`: a label of one of the expression's metrics.
    labels = set().union(*(series.get(name, set()) for name, _ in found))
    for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        for label in filter(None, (part.strip() for part in group.split(","))):
            if label not in labels:
                problems.append(f"no metric of the expression has the label {label}")
    return problems


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_alert_rules_cover_the_issue_and_name_known_metrics():
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == EXPECTED_ALERTS
    series = known_series()
    for rule in rules:
        assert check_expression(rule["expr"], series) == [], rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    text = {rule["alert"]: rule["expr"] for rule in rules}
    assert 'status=~"5.."' in text["HMSHighErrorRate"]
    assert "histogram_quantile(0.95" in text["HMSSlowResponses"] and "> 0.5" in text["HMSSlowResponses"]
    assert 'reason="doctor"' in text["HMSStreamsNearDoctorLimit"]


def test_the_checker_catches_unknown_names_and_labels():
    series = known_series()
    assert check_expression("rate(hms_no_such_metric_total[5m])", series) == [
        "unknown metric hms_no_such_metric_total"
    ]
    assert check_expression('hms_cache_requests_total{colour="red"}', series) == [
        "hms_cache_requests_total has no label colour"
    ]
    assert check_expression("vector(1)", series)
    assert check_expression("sum by (colour) (rate(hms_cache_requests_total[5m]))", series) == [
        "no metric of the expression has the label colour"
    ]


def test_the_scrape_config_reads_hms_and_its_redis_probe():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["hms"]["metrics_path"] == "/metrics"
    assert jobs["hms"]["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
    assert jobs["hms_redis"]["params"]["module"] == ["hms_redis"]
    blackbox = yaml.safe_load((DEPLOY / "prometheus" / "blackbox.yml").read_text())
    pattern = blackbox["modules"]["hms_redis"]["http"]["fail_if_body_not_matches_regexp"][0]
    assert re.search(pattern, json.dumps({"database": "ok", "redis": "ok"}))
    assert re.search(pattern, json.dumps({"database": "ok", "redis": "ok"}, separators=(",", ":")))
    assert not re.search(pattern, json.dumps({"database": "ok", "redis": "down"}))


def test_the_redis_probe_matches_what_readyz_answers(app, client):
    """The blackbox module reads /readyz's body: HMS's own answer must match its pattern
    when Redis is up (PostgreSQL + Redis run) and not match without Redis."""
    blackbox = yaml.safe_load((DEPLOY / "prometheus" / "blackbox.yml").read_text())
    pattern = blackbox["modules"]["hms_redis"]["http"]["fail_if_body_not_matches_regexp"][0]
    body = client.get("/readyz").get_data(as_text=True)
    assert bool(re.search(pattern, body)) == bool(app.config.get("REDIS_URL")), body


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (make deploy-tools)")
def test_promtool_accepts_the_config_and_the_rules_and_their_cases_pass():
    """The config and rules are valid, and alerts_test.yml's cases pass: the error-rate,
    slow-response, Redis and stream alerts fire on the series that should fire them and
    stay quiet on the others."""
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        done = subprocess.run(
            ["promtool", *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr


def dashboard_panels() -> list[dict]:
    dashboard = json.loads((DEPLOY / "grafana" / "hms-dashboard.json").read_text())
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def test_the_dashboard_has_the_seed_panels_and_names_known_metrics():
    dashboard = json.loads((DEPLOY / "grafana" / "hms-dashboard.json").read_text())
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    assert rows == ["SSE health", "Database", "API"]
    titles = {panel["title"] for panel in dashboard_panels()}
    assert {
        "Open streams",
        "Streams refused, by limit",
        "Worker memory and open files",
        "Query time p50/p95/p99",
        "Slow queries, by kind",
        "Connection pool",
        "Transactions and rollbacks",
        "Response time p95 per endpoint",
        "Error rate",
        "Throughput",
        "Cache hit rate",
    } <= titles
    series = known_series()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard_panels():
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert check_expression(target["expr"], series) == [], (panel["title"], target["expr"])
