"""deploy/nginx/hms.conf: nginx accepts it (`nginx -t`), and it says what HMS needs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

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
