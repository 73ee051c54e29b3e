"""Print views made from the screens: the **Prescription** (A5 or 80 mm thermal width).

Plain HTML with print CSS (hms/web/static/print.css): the browser's own print dialog
prints it. Roles as reading prescriptions (API.md: admin, reception, doctor, cashier).
"""

from __future__ import annotations

from flask import Blueprint, render_template

from hms.core.access import page
from hms.core.settings import setting
from hms.patients.service import age_of, get_patient
from hms.prescriptions.service import get_prescription
from hms.staff.service import doctor_profile

bp = Blueprint("prints", __name__, template_folder="templates")


@bp.route("/prescriptions/<id:prescription_id>/print")
@page("appointments.read")
def prescription(prescription_id: int):
    """One prescription to print: clinic, doctor and room, patient, date, lines, notes."""
    written = get_prescription(prescription_id)  # NotFound -> 404
    patient = get_patient(written.patient_id)
    doctor = doctor_profile(written.doctor_id) or {"name": "", "room": None}
    return render_template(
        "prescription_print.html",
        clinic=setting("CLINIC_NAME"),
        prescription=written,
        patient=patient,
        age=age_of(patient),
        doctor=doctor,
    )
