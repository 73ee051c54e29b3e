"""The queue snapshot's schemas (documentation: the snapshot is sent as the JSON bytes it
was encoded to once, not dumped through these) and the queue's query arguments."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from hms.core.fields import IsoDate, StrictSchema


class QueueQuery(StrictSchema):
    date = IsoDate(metadata={"description": "YYYY-MM-DD; default today in the clinic's time zone."})


class QueuePatientSchema(ma.Schema):
    id = fields.Integer(metadata={"description": "Absent in the display role's masked form."})
    mrn = fields.String(metadata={"description": "Absent in the masked form."})
    name = fields.String(metadata={"description": "Absent in the masked form."})
    initials = fields.String(metadata={"description": 'Masked form only, e.g. "A.K."'})


class QueueEntrySchema(ma.Schema):
    appointment_id = fields.Integer()
    token = fields.Integer()
    queue_position = fields.Integer()
    priority = fields.String(metadata={"description": "NORMAL or URGENT (URGENT waits ahead of NORMAL)."})
    status = fields.String()
    patient = fields.Nested(QueuePatientSchema)
    waiting_since = fields.String(metadata={"format": "date-time"})
    estimated_wait_minutes = fields.Integer()


class QueueDoctorSchema(ma.Schema):
    id = fields.Integer()
    name = fields.String()
    room = fields.String(
        allow_none=True, metadata={"description": 'Where the doctor sees patients ("Room 4"), or null.'}
    )


class QueueSnapshotSchema(ma.Schema):
    doctor = fields.Nested(QueueDoctorSchema)
    date = fields.String(metadata={"format": "date"})
    version = fields.Integer()
    waiting_count = fields.Integer()
    in_consultation = fields.Nested(QueueEntrySchema, allow_none=True)
    entries = fields.List(fields.Nested(QueueEntrySchema))


# --- the patient's ticket ---------------------------------------------------------------


class TicketLinkSchema(ma.Schema):
    url = fields.String(metadata={"description": "Absolute URL of the ticket page, /t/<ticket>."})
    expires_at = fields.DateTime(metadata={"description": "The end of the appointment's day, clinic time."})


class TicketDoctorSchema(ma.Schema):
    name = fields.String()
    room = fields.String(allow_none=True)


class TicketPatientSchema(ma.Schema):
    initials = fields.String(metadata={"description": 'e.g. "A.K."; never a name, MRN or phone'})


class TicketSchema(ma.Schema):
    token = fields.Integer()
    priority = fields.String()
    status = fields.String()
    doctor = fields.Nested(TicketDoctorSchema)
    queue_position = fields.Integer(
        allow_none=True, metadata={"description": "null once the appointment left the line."}
    )
    estimated_wait_minutes = fields.Integer(allow_none=True)
    now_serving_token = fields.Integer(
        allow_none=True, metadata={"description": "The token in the room, null if the room is free."}
    )
    patient = fields.Nested(TicketPatientSchema)
