"""Ids in paths are ASCII digits only: werkzeug's int converter takes any Unicode digit."""

import pytest

DIGIT_ZEROS = {"fullwidth": 0xFF10, "arabic-indic": 0x0660, "devanagari": 0x0966}


def spelled(number: int, zero: int) -> str:
    return str(number).translate({ord("0") + d: zero + d for d in range(10)})


@pytest.mark.parametrize("zero", DIGIT_ZEROS.values(), ids=DIGIT_ZEROS.keys())
@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/api/patients/{}", "patient_id"),
        ("/api/staff/{}", "doctor_id"),
        ("/api/departments/{}", "department_id"),
        ("/api/bills/{}", "bill_id"),
    ],
)
def test_non_ascii_digits_in_a_path_are_404(world, path, key, zero):
    ids, clients = world
    admin = clients["admin"]
    assert admin.get(path.format(ids[key])).status_code == 200  # the id in ASCII digits exists
    for text in (spelled(ids[key], zero), str(ids[key]) + spelled(0, zero)):
        res = admin.get(path.format(text))
        assert res.status_code == 404, (text, res.get_data(as_text=True))
        assert res.get_json()["code"] == 404


def test_a_page_path_refuses_them_too(world):
    ids, clients = world
    assert clients["admin"].get("/display/" + spelled(ids["doctor_id"], 0xFF10)).status_code == 404
