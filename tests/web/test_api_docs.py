"""/api/docs: the vendored Swagger UI, served entirely by HMS (no CDN), under a strict CSP."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_server
from tests.web.test_display_browser import browser  # noqa: F401 - the Chromium fixture

VENDOR = ROOT / "hms" / "web" / "static" / "vendor" / "swagger-ui"


def test_the_docs_page_references_no_external_host(client):
    res = client.get("/api/docs")
    assert res.status_code == 200 and res.mimetype == "text/html"
    html = res.get_data(as_text=True)
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls, html
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert "http://" not in html and "https://" not in html and "cdn" not in html.lower()
    # No inline code: every script is a static file of HMS, with no body.
    for attributes, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
        assert ' src="/static/' in attributes and not body.strip()
    assert "<style" not in html and " style=" not in html


def test_its_scripts_and_styles_are_served_by_hms(client):
    html = client.get("/api/docs").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert {
        "/static/vendor/swagger-ui/swagger-ui-bundle.js",
        "/static/vendor/swagger-ui/swagger-ui.css",
        "/static/api-docs.js",
    } <= set(assets)
    for asset in assets:
        res = client.get(asset)
        assert res.status_code == 200, asset
        assert len(res.get_data()) > 0
        res.close()
    spec_url = re.search(r'data-spec-url="([^"]+)"', html).group(1)
    assert client.get(spec_url).get_json()["openapi"].startswith("3.")


def test_the_docs_page_runs_under_a_self_only_csp(client):
    csp = client.get("/api/docs").headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no host
    assert "http" not in csp and "unsafe" not in csp
    assert directives["frame-ancestors"] == "'none'"


def test_the_vendored_files_carry_their_version_and_licence():
    assert (VENDOR / "VERSION").read_text().strip().startswith("5.")
    assert "Apache License" in (VENDOR / "LICENSE").read_text()
    readme = (VENDOR / "README.md").read_text()
    assert "swagger-ui-dist" in readme and (VENDOR / "VERSION").read_text().strip() in readme
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert (VENDOR / name).stat().st_size > 100_000


def test_the_docs_render_in_a_browser_with_no_csp_violation_or_outside_request(
    database_url,
    browser,  # noqa: F811
):
    page = browser.new_page()
    problems: list[str] = []
    outside: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    failed: list[str] = []
    page.on("response", lambda res: failed.append(res.url) if res.status >= 400 else None)
    with run_server(database_url, workers=1) as base:
        page.on("request", lambda req: outside.append(req.url) if not req.url.startswith(base) else None)
        page.goto(f"{base}/api/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=20_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        page.close()
    assert any("/api/tickets/{ticket}" in path for path in paths), paths[:10]
    assert outside == []
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    # The browser's own favicon request is the one 404 allowed.
    assert [url for url in failed if not url.endswith("/favicon.ico")] == []
    assert [p for p in problems if "404" not in p] == []


@pytest.mark.parametrize("name", ["swagger-ui-bundle.js", "swagger-ui.css"])
def test_the_vendored_files_are_the_upstream_ones(name):
    """The README's checksums are the files' own (a hand-edited copy would fail)."""
    import hashlib

    readme = (VENDOR / "README.md").read_text()
    digest = hashlib.sha256((VENDOR / name).read_bytes()).hexdigest()
    assert f"{digest}  {name}" in readme
    assert Path(VENDOR / name).exists()
