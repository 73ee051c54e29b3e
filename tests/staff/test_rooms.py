"""A doctor's room: set with POST/PATCH /api/staff, shown in staff and doctor answers."""

from __future__ import annotations

import pytest


def new_doctor(**fields) -> dict:
    return {"username": "dr.room", "password": "long-enough", "name": "Dr Room", "role": "doctor", **fields}


def test_a_doctor_has_a_room_in_every_answer(admin, reception):
    res = admin.post("/api/staff", json=new_doctor(room="  Room 4  "))
    assert res.status_code == 201, res.get_json()
    doctor_id = res.get_json()["id"]
    assert res.get_json()["room"] == "Room 4"
    assert admin.get(f"/api/staff/{doctor_id}").get_json()["room"] == "Room 4"
    assert reception.get(f"/api/doctors/{doctor_id}").get_json()["room"] == "Room 4"
    assert reception.get("/api/doctors").get_json()["data"][0]["room"] == "Room 4"
    # A change shows at once in the cached directory; blank or null clears it.
    assert admin.patch(f"/api/staff/{doctor_id}", json={"room": "OPD 2, 1st floor"}).get_json()["room"] == (
        "OPD 2, 1st floor"
    )
    assert reception.get(f"/api/doctors/{doctor_id}").get_json()["room"] == "OPD 2, 1st floor"
    assert reception.get("/api/doctors").get_json()["data"][0]["room"] == "OPD 2, 1st floor"
    assert admin.patch(f"/api/staff/{doctor_id}", json={"room": "   "}).get_json()["room"] is None
    assert admin.patch(f"/api/staff/{doctor_id}", json={"room": "Room 9"}).get_json()["room"] == "Room 9"
    assert admin.patch(f"/api/staff/{doctor_id}", json={"room": None}).get_json()["room"] is None
    assert reception.get(f"/api/doctors/{doctor_id}").get_json()["room"] is None


def test_a_room_without_one_is_null(admin):
    body = admin.post("/api/staff", json=new_doctor()).get_json()
    assert body["room"] is None


@pytest.mark.parametrize("room", ["x" * 41, "Room\n4", "Room\x004", 4, ["Room 4"], {"name": "4"}])
def test_a_bad_room_is_422(admin, room):
    res = admin.post("/api/staff", json=new_doctor(room=room))
    assert res.status_code == 422 and "room" in res.get_json()["errors"]["json"], res.get_json()
    assert admin.post("/api/staff", json=new_doctor()).status_code == 201  # nothing was created


def test_only_doctors_have_a_room(admin):
    res = admin.post("/api/staff", json=new_doctor(role="reception", room="Desk 1"))
    assert res.status_code == 422 and "room" in res.get_json()["errors"]["json"]
    # A null (or blank) room is no room: fine for anyone.
    res = admin.post("/api/staff", json=new_doctor(role="reception", room=None))
    assert res.status_code == 201 and res.get_json()["room"] is None
    doctor = admin.post("/api/staff", json=new_doctor(username="dr.two", room="Room 2")).get_json()
    # Leaving the doctor role clears the room with the fees.
    changed = admin.patch(f"/api/staff/{doctor['id']}", json={"role": "reception"}).get_json()
    assert changed["room"] is None and changed["consultation_fee"] is None


def test_a_doctor_cannot_change_their_own_room(as_role, admin):
    doctor = as_role("doctor")
    res = doctor.patch(f"/api/staff/{doctor.user.id}", json={"room": "Room 1"})
    assert res.status_code == 403
