"""gunicorn.conf.py: the garbage-collector thresholds each worker sets, and the metrics directory."""

import runpy
from pathlib import Path

import pytest

CONF = str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py")


def _load(monkeypatch, value: str | None) -> dict:
    if value is None:
        monkeypatch.delenv("GC_THRESHOLDS", raising=False)
    else:
        monkeypatch.setenv("GC_THRESHOLDS", value)
    return runpy.run_path(CONF)


def test_default_thresholds_are_raised(monkeypatch):
    assert _load(monkeypatch, None)["gc_thresholds"] == (50000, 20, 100)


def test_thresholds_from_the_environment(monkeypatch):
    assert _load(monkeypatch, " 1000, 5,7")["gc_thresholds"] == (1000, 5, 7)


def test_python_keeps_the_interpreter_defaults(monkeypatch):
    assert _load(monkeypatch, "python")["gc_thresholds"] is None


@pytest.mark.parametrize("value", ["", "1,2", "a,b,c", "0,10,10", "1,2,3,4"])
def test_bad_thresholds_stop_the_start(monkeypatch, value):
    with pytest.raises(SystemExit, match="GC_THRESHOLDS"):
        _load(monkeypatch, value)


# --- metrics: the multiprocess directory ------------------------------------------------------


def test_a_given_metrics_directory_is_emptied_at_start(monkeypatch, tmp_path):
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    conf = _load(monkeypatch, None)
    conf["on_starting"](None)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["keep.txt"]
    conf["on_exit"](None)
    assert tmp_path.is_dir()  # not ours to remove


def test_without_a_directory_each_start_makes_its_own(monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # so that it is restored after the test
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    conf = _load(monkeypatch, None)
    conf["on_starting"](None)
    import os

    made = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert made.is_dir() and made.name.startswith("hms-metrics-")
    conf["on_exit"](None)
    assert not made.exists()


def test_a_dead_workers_live_gauges_are_dropped_and_its_counts_kept(monkeypatch, tmp_path):
    from types import SimpleNamespace

    for name in ("gauge_livesum_4242.db", "gauge_liveall_4242.db", "counter_4242.db", "gauge_livesum_77.db"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    _load(monkeypatch, None)["child_exit"](None, SimpleNamespace(pid=4242))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["counter_4242.db", "gauge_livesum_77.db"]
