"""A change to a queue, and what happens around its commit.

Every change of a queue (booking, status move, call-in, a rename shown in it) records
itself in its unit of work (`record_change`, under the queue lock). Just before the
COMMIT, when a stream of the doctor is open somewhere and the date is today, the unit of
work reads the queue's snapshot (its before-commit step, after every other write): then
it is exactly the committed state, costs no second transaction, and no worker builds it
again. After the COMMIT, and only then, each `QueueChanged` is published: the queue's
cache tag is replaced (no snapshot cached before the change is read again), the change's
snapshot, if read, is cached under the new tag, and the broker tells every stream of the
doctor, carrying the encoded events when there is a snapshot.
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
_PENDING = "queue.pending_changes"
_CHANGES = "queue.changes"


@dataclass(frozen=True, slots=True)
class QueueChanged:
    """A committed change of one doctor's queue on one date, at `version`; `snapshot`:
    the state it committed, if it read it (for watching streams)."""

    doctor_id: int
    date: date
    version: int
    snapshot: Snapshot | None = None


def record_change(
    doctor_id: int,
    queue_date: date,
    version: int,
    *,
    snapshot: Snapshot | None = None,
    watched: bool | None = None,
) -> None:
    """Inside the change's unit of work, under the queue lock: publish the change after
    the commit.

    If streams watch the queue (`watched`, or asked at the commit when not given), the
    snapshot is read as the unit of work's before-commit step, after every other write
    of the transaction: exactly the committed state. `snapshot`: one the caller already
    read at the end of its change (it is not read again)."""
    uow = current_unit_of_work()
    uow.collect(_PENDING, (doctor_id, queue_date, version, snapshot, watched))
    uow.before_commit(_read_snapshots, key=_PENDING)
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


def _read_snapshots(uow: UnitOfWork) -> None:
    """Before COMMIT: the snapshot of each watched queue this unit of work changed."""
    changes = uow.state.setdefault(_CHANGES, [])
    db.session.flush()  # ORM changes of this unit of work (a rename) before the Core read
    for doctor_id, queue_date, version, snapshot, watched in uow.state.pop(_PENDING, ()):
        if snapshot is None and (streams_watch(doctor_id, queue_date) if watched is None else watched):
            snapshot = build_snapshot(doctor_id, queue_date)
        changes.append(QueueChanged(doctor_id, queue_date, version, snapshot))


def _publish_all(uow: UnitOfWork) -> None:
    for change in uow.state.get(_CHANGES, ()):
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


def touch_queues_of_patient(patient_id: int) -> list[tuple[int, date, int]]:
    """Inside the unit of work that changes what a snapshot shows of a patient (the
    name): bump the version of every queue, today on, the patient waits or sits in, so
    cached snapshots and the streams' last events are replaced after the commit. Locks
    those queues in (doctor, date) order, as every other change locks them one at a time.
    Returns the (doctor_id, date, new version) of each."""
    rows = db.session.connection().execute(
        _QUEUES_OF_PATIENT, {"patient_id": patient_id, "from_date": clinic_today()}
    )
    touched = [(doctor_id, day, lock_queue(doctor_id, day)[1]) for doctor_id, day in rows.all()]
    for doctor_id, day, version in touched:
        record_change(doctor_id, day, version)
    return touched


def touch_queues_of_doctor(doctor_id: int) -> list[tuple[int, date, int]]:
    """Like `touch_queues_of_patient`, for a change of what a snapshot shows of the doctor
    (the name): every queue of the doctor, today on. Call it before locking the doctor's
    account row: a booking locks its queue first and the account (its foreign key) after,
    so this order cannot deadlock with it."""
    rows = db.session.connection().execute(
        _TOUCH_QUEUES_OF_DOCTOR, {"q_doctor": doctor_id, "from_date": clinic_today()}
    )
    touched = [(row.doctor_id, row.queue_date, row.version) for row in rows.all()]
    for doctor_id, day, version in touched:
        record_change(doctor_id, day, version)
    return touched
