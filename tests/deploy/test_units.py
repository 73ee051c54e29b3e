"""deploy/systemd: the units parse (systemd-analyze verify) and say what docs/deploy.md says."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
NAMES = ("hms-web.service", "hms-release.service", "hms-backup.service", "hms-backup.timer")


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((UNITS / name).read_text(), source=name)
    return parser


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_the_web_unit_runs_the_procfile_web_command_with_65536_files():
    web = unit("hms-web.service")
    assert web["Service"]["ExecStart"] == "/srv/hms/app/.venv/bin/" + procfile()["web"]
    assert web["Service"]["LimitNOFILE"] == "65536"
    assert web["Service"]["Type"] == "notify"  # gunicorn tells systemd when it is ready
    assert web["Service"]["User"] == "hms" and web["Service"]["EnvironmentFile"] == "/etc/hms/hms.env"
    assert web["Service"]["KillMode"] == "mixed"
    assert web["Install"]["WantedBy"] == "multi-user.target"


def test_the_release_step_migrates_before_the_web_service_starts():
    web, release = unit("hms-web.service"), unit("hms-release.service")
    assert "hms-release.service" in web["Unit"]["Requires"].split()
    assert "hms-release.service" in web["Unit"]["After"].split()
    assert release["Service"]["Type"] == "oneshot"
    assert release["Service"]["ExecStart"] == "/srv/hms/app/.venv/bin/" + procfile()["release"]
    assert release["Service"]["EnvironmentFile"] == web["Service"]["EnvironmentFile"]
    assert "Install" not in release  # started only as the web service's requirement


def test_the_backup_timer_runs_the_backup_script_nightly():
    backup, timer = unit("hms-backup.service"), unit("hms-backup.timer")
    assert backup["Service"]["ExecStart"] == "/srv/hms/app/deploy/backup/hms-backup.sh"
    assert backup["Service"]["Type"] == "oneshot"
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:30:00" and timer["Timer"]["Persistent"] == "true"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_finds_nothing(tmp_path):
    """The units as installed, with this checkout and its interpreter in place of /srv/hms/app."""
    venv = Path(sys.executable).parent.parent
    for name in NAMES:
        text = (UNITS / name).read_text()
        text = text.replace("/srv/hms/app/.venv", str(venv)).replace("/srv/hms/app", str(ROOT))
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(f"./{name}" for name in NAMES)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # A key systemd cannot read is only a warning (exit status 0): any line about our files fails.
    ours = [line for line in (done.stdout + done.stderr).splitlines() if "hms-" in line]
    assert done.returncode == 0 and not ours, done.stdout + done.stderr
