"""A change to a queue, and what happens after its commit.

Every change of a queue (booking, status move, call-in, a rename shown in it) records a
`QueueChanged` in its unit of work. After the COMMIT, and only then, the unit of work
publishes them: the queue's cache tag is replaced (so no snapshot cached before the
change is read again), the change's own snapshot, if it read one, is cached under the
new tag, and the broker tells every stream of the doctor (carrying the encoded events,
when the change read its snapshot for watching streams).

A change reads its snapshot inside its transaction, under the queue lock, when a stream
of the doctor is open somewhere and the date is today (`snapshot_for_streams`): then it
is exactly the committed state, costs no second transaction, and no worker builds it
again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from sqlalchemy import bindparam, select, text, update

from hms.appointments.models import ACTIVE_STATUS_SQL, Appointment, QueueDay
from hms.core.settings import setting
from hms.core.time import clinic_today
from hms.core.uow import UnitOfWork, current_unit_of_work
from hms.extensions import db
from hms.queue.line import lock_queue
from hms.queue.snapshot import FULL, MASKED, Snapshot, build_snapshot, replace_tag, store_snapshot
from hms.realtime.broker import QueueBroker
from hms.realtime.limiter import StreamSlots
from hms.realtime.memo import sse_event

log = logging.getLogger(__name__)
EVENT_NAME = "queue"
_CHANGES = "queue.changes"


@dataclass(frozen=True, slots=True)
class QueueChanged:
    """A committed change of one doctor's queue on one date, at `version`; `snapshot`:
    the state it committed, if it read it (for watching streams)."""

    doctor_id: int
    date: date
    version: int
    snapshot: Snapshot | None = None


def record_change(change: QueueChanged) -> None:
    """Inside the change's unit of work: publish it after the commit."""
    uow = current_unit_of_work()
    uow.collect(_CHANGES, change)
    uow.after_commit(_publish_all, key=_CHANGES)


def streams_watch(doctor_id: int, queue_date: date) -> bool:
    """Whether a change should read its snapshot for the streams: the broker carries
    events to other workers, the date is today, and a stream of the doctor is open
    somewhere. Never raises (False: the streams build it themselves)."""
    try:
        return (
            QueueBroker.get().carries_events
            and queue_date == clinic_today()
            and StreamSlots.get().watched(doctor_id)
        )
    except Exception:  # noqa: BLE001 - the streams build the snapshot themselves
        log.warning("could not tell whether doctor %s has open streams", doctor_id, exc_info=True)
        return False


def snapshot_for_streams(doctor_id: int, queue_date: date, watched: bool) -> Snapshot | None:
    """Just before COMMIT, under the queue lock: the new snapshot if streams want it."""
    return build_snapshot(doctor_id, queue_date) if watched else None


def _publish_all(uow: UnitOfWork) -> None:
    for change in uow.state[_CHANGES]:
        publish(change)


def publish(change: QueueChanged) -> None:
    """After COMMIT: replace the cache tag (caching the change's snapshot under the new
    one), then tell the streams. Never raises: the change is committed."""
    try:
        tag = replace_tag(change.doctor_id, change.date)
        snapshot = change.snapshot
        if snapshot is not None:
            store_snapshot(snapshot, tag, setting("QUEUE_CACHE_SECONDS"))
        broker = QueueBroker.get()
        events = stream_events(snapshot) if snapshot is not None and broker.carries_events else None
        broker.publish(change.doctor_id, change.date.isoformat(), change.version, events)
    except Exception:  # noqa: BLE001 - committed: a lost push must not fail the request
        log.exception("change of doctor %s's queue not announced", change.doctor_id)


def stream_events(snapshot: Snapshot) -> dict[str, bytes]:
    """The stream's event of each form of a snapshot (the very JSON bytes GET answers)."""
    return {
        FULL: sse_event(snapshot.version, EVENT_NAME, snapshot.full),
        MASKED: sse_event(snapshot.version, EVENT_NAME, snapshot.masked),
    }


# --- renames: a change of what a snapshot shows of a patient or a doctor ----------------

_appointments, _queue_days = Appointment.__table__, QueueDay.__table__
_QUEUES_OF_PATIENT = (
    select(_appointments.c.doctor_id, _appointments.c.appointment_date)
    .where(
        _appointments.c.patient_id == bindparam("patient_id"),
        _appointments.c.appointment_date >= bindparam("from_date"),
        text(ACTIVE_STATUS_SQL),
    )
    .distinct()
    .order_by(_appointments.c.doctor_id, _appointments.c.appointment_date)
)
_TOUCH_QUEUES_OF_DOCTOR = (
    update(_queue_days)
    .where(
        _queue_days.c.doctor_id == bindparam("q_doctor"), _queue_days.c.queue_date >= bindparam("from_date")
    )
    .values(version=_queue_days.c.version + 1)
    .returning(_queue_days.c.doctor_id, _queue_days.c.queue_date, _queue_days.c.version)
)


def touch_queues_of_patient(patient_id: int) -> None:
    """Inside the unit of work that changes what a snapshot shows of a patient (the
    name): bump the version of every queue, today on, the patient waits or sits in, so
    cached snapshots and the streams' last events are replaced after the commit. Locks
    those queues in (doctor, date) order, as every other change locks them one at a time."""
    rows = db.session.connection().execute(
        _QUEUES_OF_PATIENT, {"patient_id": patient_id, "from_date": clinic_today()}
    )
    for doctor_id, day in rows.all():
        record_change(QueueChanged(doctor_id, day, lock_queue(doctor_id, day)[1]))


def touch_queues_of_doctor(doctor_id: int) -> None:
    """Like `touch_queues_of_patient`, for a change of what a snapshot shows of the doctor
    (the name): every queue of the doctor, today on. Call it before locking the doctor's
    account row: a booking locks its queue first and the account (its foreign key) after,
    so this order cannot deadlock with it."""
    rows = db.session.connection().execute(
        _TOUCH_QUEUES_OF_DOCTOR, {"q_doctor": doctor_id, "from_date": clinic_today()}
    )
    for row in rows.all():
        record_change(QueueChanged(row.doctor_id, row.queue_date, row.version))
