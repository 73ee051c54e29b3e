"""deploy/nginx/hms.conf: nginx accepts it (`nginx -t`), and it says what HMS needs."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import free_port, run_server, token_for
from tests.queue.stream_helpers import booking, open_stream, read_stream

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "deploy" / "nginx" / "hms.conf"
STREAM_PATHS = ("/api/queue/", "/api/tickets/", "/api/bills/stream")


def locations(text: str) -> dict[str, str]:
    """Each `location PATH { ... }` block's body (no nested blocks in this file)."""
    return {m.group(1): m.group(2) for m in re.finditer(r"location\s+(?:=\s+)?(\S+)\s*\{([^}]*)\}", text)}


def test_stream_paths_are_unbuffered_with_a_long_read_timeout():
    blocks = locations(SITE.read_text())
    for path in STREAM_PATHS:
        body = blocks[path]
        assert "proxy_buffering off;" in body, path
        assert "proxy_read_timeout 1h;" in body, path
        assert "proxy_pass http://hms;" in body, path
    # X-Accel-Buffering from HMS is honoured: nothing tells nginx to ignore it.
    assert "proxy_ignore_headers" not in SITE.read_text()


def test_the_proxy_passes_host_client_address_scheme_and_request_id():
    text = SITE.read_text()
    for header in (
        "proxy_set_header Host $host;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Request-ID $request_id;",
    ):
        assert header in text
    assert "server 127.0.0.1:8000;" in text
    assert "return 404;" in locations(text)["/metrics"]


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (make deploy-tools)")
def test_nginx_accepts_the_site(tmp_path):
    """nginx -t on the site inside a minimal main configuration, with a throw-away certificate."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    site = SITE.read_text()
    site = site.replace("/etc/letsencrypt/live/clinic.example.org/fullchain.pem", str(tmp_path / "cert.pem"))
    site = site.replace("/etc/letsencrypt/live/clinic.example.org/privkey.pem", str(tmp_path / "key.pem"))
    (tmp_path / "hms.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path}/body;\n"
        f"  proxy_temp_path {tmp_path}/proxy;\n  include {tmp_path}/hms.conf;\n}}\n"
    )
    done = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (make deploy-tools)")
def test_live_through_nginx_streams_arrive_at_once_and_links_name_the_clinic(
    app, database_url, make_user, tmp_path, monkeypatch
):
    """The site in front of a live HMS (TRUSTED_PROXY_COUNT=1), over HTTPS: a queue change
    reaches the open stream through nginx within a second, and the patient's ticket link
    carries the clinic's host and https (Host and X-Forwarded-Proto passed on)."""
    reception_user, doctor_user = make_user("reception"), make_user("doctor")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp_path / "key.pem"),
         "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "cert.pem"))
    env = {"TRUSTED_PROXY_COUNT": "1", "SSE_HEARTBEAT_SECONDS": "1"}
    with run_server(database_url, workers=1, extra_env=env) as base, nginx_in_front(base, tmp_path) as proxy:
        headers = {"Authorization": f"Bearer {token_for(app, reception_user)}", "Host": "clinic.example.org"}
        reader = read_stream(open_stream(proxy, doctor_user.id, **headers))
        try:
            first = reader.next_event()
            patient = requests.post(
                proxy + "/api/patients",
                json={"name": "Asha Kumar", "gender": "female"},
                headers=headers,
                timeout=10,
            )
            booked = requests.post(
                proxy + "/api/appointments", json=booking(patient.json()["id"], doctor_user.id), headers=headers,
                timeout=10,
            )  # fmt: skip
            committed = time.monotonic()
            assert booked.status_code == 201, booked.text
            event = reader.next_event(timeout=3)
            assert int(event.id) > int(first.id)
            assert event.at - committed < 1.0
        finally:
            reader.close()
        ticket = requests.get(
            f"{proxy}/api/appointments/{booked.json()['id']}/ticket", headers=headers, timeout=10
        ).json()
        assert ticket["url"].startswith("https://clinic.example.org/t/")
        assert requests.get(proxy + "/metrics", timeout=10).status_code == 404


@contextmanager
def nginx_in_front(base: str, folder: Path):
    """nginx (foreground, as a child) with deploy/nginx/hms.conf on a free port, before `base`."""
    https_port = free_port()
    site = SITE.read_text()
    for old, new in (
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{urlsplit(base).port};"),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        ("listen 80;", f"listen 127.0.0.1:{free_port()};"),
        ("/etc/letsencrypt/live/clinic.example.org/fullchain.pem", str(folder / "cert.pem")),
        ("/etc/letsencrypt/live/clinic.example.org/privkey.pem", str(folder / "key.pem")),
    ):
        assert old in site
        site = site.replace(old, new)
    site = "\n".join(line for line in site.splitlines() if "[::]" not in line)
    (folder / "hms.conf").write_text(site)
    (folder / "nginx.conf").write_text(
        f"daemon off;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {folder}/body;\n"
        f"  proxy_temp_path {folder}/proxy;\n  include {folder}/hms.conf;\n}}\n"
    )
    process = subprocess.Popen(
        ["nginx", "-p", str(folder), "-c", str(folder / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    proxy = f"https://127.0.0.1:{https_port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, process.stderr.read().decode()
            try:
                if requests.get(proxy + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (folder / "error.log").read_text()
            time.sleep(0.1)
        yield proxy
    finally:
        process.terminate()
        process.wait(timeout=15)
