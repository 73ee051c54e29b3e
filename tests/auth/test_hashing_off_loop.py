"""Password hashing runs in gevent's thread pool under gevent, so a worker's other
requests and streams go on while a sign-in hashes (issue #17: 16 parallel sign-ins took a
cached queue read from 3 ms to 506 ms at p50). Checked in a child process that
monkey-patches like gunicorn's gevent worker does; the test process stays unpatched."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

CHILD = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()

    import json, time
    import gevent
    from werkzeug import security

    from config import TestingConfig
    from hms import create_app
    from hms.auth import service
    from hms.core.offload import under_gevent

    main_thread = monkey.get_original("threading", "get_ident")()
    threads = []
    real_check = service.check_password_hash

    def recording_check(*args):
        threads.append(monkey.get_original("threading", "get_ident")())
        return real_check(*args)

    service.check_password_hash = recording_check
    config = TestingConfig()
    config.PASSWORD_HASH_METHOD = "scrypt:32768:8:1"  # the production cost: about 0.1 s
    app = create_app(config)
    ticks = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.005)

    with app.app_context():
        password_hash = service.hash_password("right-pass")
        identity = service.Identity(1, "meera", "Meera", "doctor", True, 0)
        ticking = gevent.spawn(ticker)
        gevent.sleep(0)
        started = time.monotonic()
        assert service._check_password((identity, password_hash), "right-pass") == identity
        took = time.monotonic() - started
        during = [t for t in ticks if started <= t <= started + took]
        ticking.kill()
    print(json.dumps({
        "under_gevent": under_gevent(),
        "off_main_thread": bool(threads) and all(t != main_thread for t in threads),
        "hash_seconds": took,
        "loop_ticks_during_hash": len(during),
    }))
    """
)


def test_under_gevent_the_password_check_runs_in_the_thread_pool_and_the_loop_goes_on():
    result = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["under_gevent"] is True
    assert seen["off_main_thread"] is True
    # The loop kept running while the hash took its time: a greenlet ticking every 5 ms
    # ticked many times (on the loop, it could not tick at all until the hash was done).
    assert seen["loop_ticks_during_hash"] >= max(3, int(seen["hash_seconds"] / 0.005 / 4)), seen


def test_without_gevent_hashing_is_a_plain_call(app):
    from hms.auth import service
    from hms.core.offload import under_gevent

    assert under_gevent() is False
    with app.app_context():
        assert service.hash_password("x-password").startswith("scrypt:")
