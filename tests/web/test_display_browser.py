"""The waiting-room page in headless Chromium against a live gunicorn server.

Uses Debian's /usr/bin/chromium (`make install` installs it when run as root) through
the `playwright` package; never `playwright install`. Skipped, with the reason, when
either is missing.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port, run_server, token_for
from tests.queue.stream_helpers import booking, make_patient

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def port_outside_ephemeral_range() -> int:
    """A free port the kernel never hands out as a client's source port.

    The page keeps reconnecting while its server is down; to a port in the ephemeral
    range such a connection can be given that very port as its source (a TCP
    self-connect) and keep the restarted server from binding it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(max(1024, low - 12000), low), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (run `make install` as root)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_display_page_shows_a_new_booking_and_recovers_from_a_restart(app, database_url, make_user, browser):
    doctor = make_user("doctor", name="Meera Rao")
    screen = make_user("display", password="screen-pass")
    reception = token_for(app, make_user("reception"))
    port = port_outside_ephemeral_range()
    env = {"SSE_HEARTBEAT_SECONDS": "1", "SSE_RETRY_MS": "500", "DB_POOL_SIZE": "2", "DB_MAX_OVERFLOW": "3"}

    def book(base: str, name: str, priority: str = "NORMAL") -> dict:
        res = requests.post(
            f"{base}/api/appointments",
            json={**booking(make_patient(app, name), doctor.id), "priority": priority},
            headers={"Authorization": f"Bearer {reception}"},
            timeout=10,
        )
        assert res.status_code == 201, res.text
        return res.json()

    page = browser.new_page(viewport={"width": 1280, "height": 720})
    with run_server(database_url, workers=1, extra_env=env, port=port) as base:
        page.goto(f"{base}/display/{doctor.id}")
        assert "/login" in page.url  # a signed-in session is required
        page.fill("#username", screen.username)
        page.fill("#password", "screen-pass")
        page.click("button[type=submit]")
        page.wait_for_url(f"**/display/{doctor.id}")
        page.wait_for_selector('.status[data-state="live"]', timeout=5000)
        assert page.inner_text(".doctor-name") == "Meera Rao"

        first = book(base, "Asha Kumar")  # within 2 s of the booking's commit:
        item = page.wait_for_selector(f'ol.next li[data-token="{first["token"]}"]', timeout=2000)
        assert item.inner_text().split()[:2] == ["1", "A.K."]
        assert "Asha" not in page.content()

    # The server is gone: the screen says so, and keeps trying.
    page.wait_for_selector('.status[data-state="reconnecting"]', timeout=5000)
    assert page.inner_text(".status") == "Reconnecting…"

    with run_server(database_url, workers=1, extra_env=env, port=port) as base:
        page.wait_for_selector('.status[data-state="live"]', timeout=15000)
        second = book(base, "Ravi Shankar", priority="URGENT")
        urgent = page.wait_for_selector(f'ol.next li.urgent[data-token="{second["token"]}"]', timeout=2000)
        assert urgent.query_selector(".token").inner_text() == str(second["token"])
        assert urgent.query_selector(".urgent-flag").text_content() == "Urgent"  # in words, not only colour
        tokens = page.eval_on_selector_all("ol.next li", "items => items.map(i => i.dataset.token)")
        assert tokens == [str(second["token"]), str(first["token"])]  # the urgent one first
        assert page.inner_text(".waiting-count").startswith("2 waiting")
        Path("tests/screenshots").mkdir(parents=True, exist_ok=True)
        page.screenshot(path="tests/screenshots/display-urgent.png")
    page.close()
