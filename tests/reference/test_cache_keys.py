"""Searches and deep pages are not cached: 3,000 distinct searches once stored 3,000
hour-long keys, in a Redis without maxmemory."""

from __future__ import annotations

from tests.conftest import cache_key_count


def test_distinct_searches_and_pages_add_at_most_a_constant_number_of_keys(app, admin):
    for name in ("Cardiology", "Neurology", "Oncology"):
        assert admin.post("/api/departments", json={"name": name}).status_code == 201
    assert admin.get("/api/departments").status_code == 200  # the first page: cached
    before = cache_key_count(app)
    for n in range(60):
        searched = admin.get(f"/api/departments?q=olog{n % 3 or ''}x{n}")
        assert searched.status_code == 200
        assert admin.get(f"/api/departments?page={n + 2}").status_code == 200
    found = admin.get("/api/departments?q=olog").get_json()
    assert [d["name"] for d in found["data"]] == ["Cardiology", "Neurology", "Oncology"]
    assert cache_key_count(app) - before <= 2


def test_the_first_page_is_still_cached_and_forgotten_on_a_write(app, admin, count_queries):
    admin.post("/api/departments", json={"name": "Cardiology"})
    admin.get("/api/departments")
    with count_queries() as counter:
        assert [d["name"] for d in admin.get("/api/departments").get_json()["data"]] == ["Cardiology"]
    assert counter.count == 0
    admin.post("/api/departments", json={"name": "Neurology"})
    assert len(admin.get("/api/departments").get_json()["data"]) == 2
