"""hms.core.blueprint: argument schemas are built once, not per request."""

from unittest import mock

import marshmallow as ma


def test_a_request_builds_no_schema(reception):
    """Nested schemas are built lazily by the first answer that dumps them; after that,
    neither parsing nor answering builds one."""

    def requests():
        registered = reception.post(
            "/api/patients", json={"name": "Asha Kumar", "gender": "female", "age": 30}
        )
        found = reception.get("/api/patients", query_string={"q": "asha"})
        assert registered.status_code == 201 and found.status_code == 200

    requests()
    created = []
    original = ma.Schema.__init__

    def counting_init(self, *args, **kwargs):
        created.append(type(self).__name__)
        original(self, *args, **kwargs)

    with mock.patch.object(ma.Schema, "__init__", counting_init):
        requests()
    assert created == []
