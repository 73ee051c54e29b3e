"""The ticket's stream on a real gunicorn server (gevent workers), read by a real client:
one worker on the embedded default; two sharing PostgreSQL and Redis otherwise, so a
change made through one worker reaches ticket streams on the other, and the limit of 3
per ticket holds across workers."""

from __future__ import annotations

import json
import time

import requests

from tests.queue.stream_helpers import read_stream
from tests.queue.test_streams import people, sse_server  # noqa: F401 - the fixture

TIMEOUT = (5, 30)


def ticket_url(base: str, people) -> str:  # noqa: F811
    res = requests.post(
        f"{base}/api/appointments",
        json={"patient_id": people.patient_id, "doctor_id": people.doctor_id, "appointment_type": "NEW"},
        headers={"Authorization": f"Bearer {people.reception_token}"},
        timeout=10,
    )
    assert res.status_code == 201, res.text
    link = requests.get(
        f"{base}/api/appointments/{res.json()['id']}/ticket",
        headers={"Authorization": f"Bearer {people.reception_token}"},
        timeout=10,
    ).json()["url"]
    assert link.startswith(base + "/t/")  # the absolute URL is built from the request's host
    return base + "/api/tickets/" + link.rsplit("/t/", 1)[1]


def test_live_ticket_streams_follow_the_queue_and_stay_within_their_own_limit(
    database_url,
    people,  # noqa: F811
):
    with sse_server(database_url, SSE_MAX_CONNECTIONS_PER_DOCTOR=1) as base:
        url = ticket_url(base, people)
        staff = requests.get(
            f"{base}/api/queue/{people.doctor_id}/stream",
            headers={"Authorization": f"Bearer {people.reception_token}"},
            stream=True,
            timeout=TIMEOUT,
        )
        readers = [read_stream(staff)]  # the doctor's only staff slot is taken...
        try:
            readers += [
                read_stream(requests.get(url + "/stream", stream=True, timeout=TIMEOUT)) for _ in range(3)
            ]  # ...and the ticket's three still open, whichever worker each lands on
            firsts = [reader.next_event() for reader in readers[1:]]
            assert {first.event for first in firsts} == {"ticket"}
            assert json.loads(firsts[0].data)["queue_position"] == 1
            over = requests.get(url + "/stream", stream=True, timeout=TIMEOUT)
            assert over.status_code == 429 and over.json()["code"] == 429
            assert int(over.headers["Retry-After"]) >= 1
            over.close()
            time.sleep(0.5)  # the subscribers of both workers are connected
            called = requests.post(
                f"{base}/api/queue/{people.doctor_id}/next",
                headers={"Authorization": f"Bearer {people.doctor_token}"},
                timeout=10,
            )
            assert called.status_code == 200, called.text
            committed = time.monotonic()
            for reader in readers[1:]:
                event = reader.next_event(timeout=3)
                assert event.at - committed < 1.0
                body = json.loads(event.data)
                assert (body["status"], body["now_serving_token"]) == ("IN_CONSULTATION", 1)
                assert "Asha" not in event.data
        finally:
            for reader in readers:
                reader.close()
