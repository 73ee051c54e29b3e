"""gunicorn.conf.py: the garbage-collector thresholds each worker sets."""

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
