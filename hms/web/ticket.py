"""The patient's own ticket, /t/<ticket>: their token on their phone, live, no account.

The signed ticket is the only credential (hms.queue.tickets): the page shows what
`read_ticket` answers and nothing more (the patient's initials, never a name, MRN or
phone) and follows `/api/tickets/<ticket>/stream` (hms/web/static/ticket.js), which
takes none of the doctor's staff or display slots. Every bad ticket (forged, tampered,
expired, unknown) is one friendly 404 page that says nothing about the appointment.
The answers are never cached and send no referrer: the ticket is in the URL.
"""

from __future__ import annotations

from flask import Blueprint, render_template, url_for

from hms.core.access import public
from hms.core.settings import setting
from hms.errors import NotFound
from hms.queue.tickets import read_ticket

bp = Blueprint("ticket", __name__, template_folder="templates")
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@bp.route("/t/<ticket>")
@public
def ticket(ticket: str):
    """The patient's ticket page (public: the signature is the credential)."""
    try:
        shown = read_ticket(ticket)
    except NotFound:
        return render_template("ticket_missing.html", clinic=setting("CLINIC_NAME")), 404, PRIVATE
    return (
        render_template(
            "ticket.html",
            clinic=setting("CLINIC_NAME"),
            ticket=shown,
            stream_url=url_for("tickets.TicketStreamResource", ticket=ticket),
        ),
        200,
        PRIVATE,
    )
