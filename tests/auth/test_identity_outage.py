"""An account change made while Redis is unreachable holds once Redis is back."""

from __future__ import annotations

import time

from tests.outage import cache_at, redis_link

__all__ = ["redis_link"]


def _wait_for(check, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_an_account_disabled_during_a_redis_blip_is_refused_at_once_after_it(app, as_role, redis_link):
    link, direct = redis_link
    with cache_at(app, link.url):
        admin = as_role("admin")
        victim = as_role("reception")
        assert victim.get("/api/auth/me").status_code == 200  # its identity is now in Redis
        key = f"hms:identity:{victim.user.id}"
        assert direct.exists(key)

        link.cut()
        res = admin.patch(f"/api/staff/{victim.user.id}", json={"active": False})
        assert res.status_code == 200, res.get_json()  # the cache's delete failed
        assert direct.exists(key)  # Redis still holds the old, active identity
        link.restore()

        # This worker does not trust what it could not invalidate...
        assert victim.get("/api/auth/me").status_code == 401
        # ...and deletes it once Redis answers, so no other worker reads it either.
        assert _wait_for(lambda: not direct.exists(key))
        assert victim.get("/api/auth/me").status_code == 401


def test_a_demotion_during_a_redis_blip_applies_at_once_after_it(app, as_role, redis_link):
    link, direct = redis_link
    with cache_at(app, link.url):
        admin = as_role("admin")
        staff = as_role("reception")
        assert staff.get("/api/patients").status_code == 200
        link.cut()
        res = admin.patch(f"/api/staff/{staff.user.id}", json={"role": "display"})
        assert res.status_code == 200, res.get_json()
        link.restore()
        assert staff.get("/api/patients").status_code == 403
        assert staff.get("/api/auth/me").get_json()["role"] == "display"
