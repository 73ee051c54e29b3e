"""A rename made while Redis is unreachable is listed once Redis is back."""

from __future__ import annotations

import time

from tests.outage import cache_at, redis_link

__all__ = ["redis_link"]


def _generation_keys(direct) -> dict[bytes, bytes]:
    return {key: direct.get(key) for key in direct.scan_iter(match="hms:gen:*")}


def test_a_department_renamed_during_a_redis_blip_is_listed_by_its_new_name(
    app, admin, reception, redis_link
):
    link, direct = redis_link
    with cache_at(app, link.url):
        created = admin.post("/api/departments", json={"name": "Cardiology"}).get_json()
        listed = reception.get("/api/departments").get_json()["data"]
        assert [d["name"] for d in listed] == ["Cardiology"]  # the page is now in Redis
        before = _generation_keys(direct)

        link.cut()
        res = admin.patch(f"/api/departments/{created['id']}", json={"name": "Heart"})
        assert res.status_code == 200, res.get_json()  # the generation bump failed
        link.restore()

        assert [d["name"] for d in reception.get("/api/departments").get_json()["data"]] == ["Heart"]
        assert reception.get(f"/api/departments/{created['id']}").get_json()["name"] == "Heart"
        # The namespace is invalidated in Redis too: other workers read the new name.
        deadline = time.monotonic() + 3
        while _generation_keys(direct) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _generation_keys(direct) != before
