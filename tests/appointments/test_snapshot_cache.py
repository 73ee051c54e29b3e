"""The snapshot route sends the cached dict as is: it must be exactly what the schema
documents, and a hit must come from one cache round trip that is never stale."""

from tests.appointments.helpers import book_ok, set_status


def test_snapshot_body_is_what_the_schema_would_dump(app, reception, display, dr, new_patient):
    from hms.appointments.schemas import QueueSnapshotSchema

    first = book_ok(reception, new_patient("Asha Kumar"), dr.id)
    book_ok(reception, new_patient("Ravi Das"), dr.id)
    set_status(reception, first["id"], "IN_CONSULTATION")
    for client in (reception, display):
        body = client.get(f"/api/queue/{dr.id}").get_json()
        assert body == QueueSnapshotSchema().dump(body)
        assert body["waiting_count"] == 1 and body["in_consultation"]["token"] == 1


def test_cached_snapshot_is_replaced_by_the_next_write(app, reception, dr, new_patient, count_queries):
    book_ok(reception, new_patient("Asha Kumar"), dr.id)
    before = reception.get(f"/api/queue/{dr.id}").get_json()
    with count_queries() as counter:
        again = reception.get(f"/api/queue/{dr.id}").get_json()
    assert again == before
    assert counter.count == 0  # served from the cache
    book_ok(reception, new_patient("Ravi Das"), dr.id)
    after = reception.get(f"/api/queue/{dr.id}").get_json()
    assert after["version"] > before["version"]
    assert [e["token"] for e in after["entries"]] == [1, 2]
