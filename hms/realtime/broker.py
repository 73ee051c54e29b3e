"""Queue-change notifications for the live streams.

Contract used by the appointments domain: after a transaction that changed a doctor's
queue has COMMITTED, call `notify_queue_changed(doctor_id, queue_date, version)`.
The realtime domain fans that out to every open stream of that doctor (in process on
the embedded default, over Redis pub/sub when REDIS_URL is set).

This first version only keeps the last version seen per queue; the realtime issue
replaces it with the real broker without changing the call.
"""

from __future__ import annotations

from datetime import date

_last_versions: dict[tuple[int, date], int] = {}


def notify_queue_changed(doctor_id: int, queue_date: date, version: int) -> None:
    _last_versions[(doctor_id, queue_date)] = version
