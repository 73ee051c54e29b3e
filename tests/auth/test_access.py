"""Who may call each route: API.md's role matrix, route by route, and what a new role gets.

The tables below are copied from API.md by hand, not imported from hms.core.roles: a role
added to or taken from any route, or any row of the matrix, fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hms.auth.access import policy_of, roles_of
from hms.core import roles
from hms.core.access import PUBLIC

A, R, D, C, S = "admin", "reception", "doctor", "cashier", "display"

# API.md's "Authentication and roles" matrix: row -> (roles, the roles limited to their own
# records). The display's "masked only" is checked in tests/core/test_roles.py.
API_MATRIX = {
    "staff accounts, reference-data writes": ({A}, set()),
    "read reference data, doctors": ({A, R, D, C}, set()),
    "create / update patients": ({A, R}, set()),
    "read / search patients": ({A, R, D, C}, set()),
    "book appointments": ({A, R}, set()),
    "change appointment status": ({A, R, D}, {D}),
    "write prescriptions": ({D}, {D}),
    "read appointments, events, prescriptions": ({A, R, D, C}, set()),
    "create bills, add items": ({A, R, D, C}, {D}),
    "take payments": ({A, R, C}, set()),
    "refunds, void a bill": ({A}, set()),
    "queue snapshot and stream": ({A, R, D, C, S}, set()),
    "the patient's ticket link": ({A, R}, set()),
    # Not rows of the matrix: reading bills (every staff role, like the other reads),
    # PATCH /api/staff/<id> ("admin; a doctor may set their own is_available"), and what
    # every account may do.
    "read bills": ({A, R, D, C}, set()),
    "change a staff account": ({A, D}, {D}),
    "any account": ({A, R, D, C, S}, set()),
    # The staff screens (CONSOLES.md): the doctor's screen is the doctor's own queue, or
    # any doctor's for an admin.
    "the doctor's screen": ({A, D}, set()),
    # API.md's "Reports (admin)": admin only; a cashier may read their own cash-up.
    "reports": ({A}, set()),
    "a cashier's cash-up": ({A, C}, {C}),
    "the admin's console": ({A}, set()),
    "the cashier's screen": ({A, C}, set()),
}

REFERENCE = (
    "departments",
    "specializations",
    "test-types",
    "medicines",
    "medicine-instructions",
    "categories",
)
ROUTES = {
    ("GET", "/api/staff"): "staff accounts, reference-data writes",
    ("POST", "/api/staff"): "staff accounts, reference-data writes",
    ("GET", "/api/staff/<id:staff_id>"): "staff accounts, reference-data writes",
    ("PATCH", "/api/staff/<id:staff_id>"): "change a staff account",
    ("GET", "/api/doctors"): "read reference data, doctors",
    ("GET", "/api/doctors/<id:doctor_id>"): "read reference data, doctors",
    **{
        (method, f"/api/{name}"): row
        for name in REFERENCE
        for method, row in (
            ("GET", "read reference data, doctors"),
            ("POST", "staff accounts, reference-data writes"),
        )
    },
    **{
        (method, f"/api/{name}/<id:item_id>"): row
        for name in REFERENCE
        for method, row in (
            ("GET", "read reference data, doctors"),
            ("PATCH", "staff accounts, reference-data writes"),
            ("DELETE", "staff accounts, reference-data writes"),
        )
    },
    ("GET", "/api/patients"): "read / search patients",
    ("GET", "/api/patients/duplicates"): "read / search patients",
    ("POST", "/api/patients"): "create / update patients",
    ("GET", "/api/patients/<id:patient_id>"): "read / search patients",
    ("PATCH", "/api/patients/<id:patient_id>"): "create / update patients",
    ("GET", "/api/patients/<id:patient_id>/appointments"): "read appointments, events, prescriptions",
    ("GET", "/api/patients/<id:patient_id>/bills"): "read bills",
    ("GET", "/api/appointments"): "read appointments, events, prescriptions",
    ("POST", "/api/appointments"): "book appointments",
    ("GET", "/api/appointments/<id:appointment_id>"): "read appointments, events, prescriptions",
    ("PATCH", "/api/appointments/<id:appointment_id>/status"): "change appointment status",
    ("GET", "/api/appointments/<id:appointment_id>/events"): "read appointments, events, prescriptions",
    ("GET", "/api/appointments/<id:appointment_id>/bills"): "read bills",
    (
        "GET",
        "/api/appointments/<id:appointment_id>/prescriptions",
    ): "read appointments, events, prescriptions",
    ("POST", "/api/appointments/<id:appointment_id>/prescriptions"): "write prescriptions",
    ("GET", "/api/prescriptions/<id:prescription_id>"): "read appointments, events, prescriptions",
    ("POST", "/api/queue/<id:doctor_id>/next"): "change appointment status",
    ("GET", "/api/queue/<id:doctor_id>"): "queue snapshot and stream",
    ("GET", "/api/queue/<id:doctor_id>/stream"): "queue snapshot and stream",
    ("GET", "/api/queue/stream"): "queue snapshot and stream",
    ("GET", "/display/<id:doctor_id>"): "queue snapshot and stream",
    ("GET", "/display"): "queue snapshot and stream",
    ("GET", "/api/appointments/<id:appointment_id>/ticket"): "the patient's ticket link",
    ("GET", "/api/bills"): "read bills",
    ("POST", "/api/bills"): "create bills, add items",
    ("GET", "/api/bills/<id:bill_id>"): "read bills",
    ("POST", "/api/bills/<id:bill_id>/items"): "create bills, add items",
    ("POST", "/api/bills/<id:bill_id>/payments"): "take payments",
    ("POST", "/api/bills/<id:bill_id>/refunds"): "refunds, void a bill",
    ("POST", "/api/bills/<id:bill_id>/void"): "refunds, void a bill",
    ("POST", "/api/bills/<id:bill_id>/prescribed-items"): "create bills, add items",
    ("GET", "/api/bills/stream"): "read bills",
    ("GET", "/api/auth/me"): "any account",
    ("GET", "/"): "any account",
    ("GET", "/doctor"): "the doctor's screen",
    ("GET", "/doctor/<id:doctor_id>/room"): "the doctor's screen",
    ("POST", "/doctor/<id:doctor_id>/next"): "change appointment status",
    ("POST", "/doctor/appointments/<id:appointment_id>/status"): "change appointment status",
    ("POST", "/doctor/appointments/<id:appointment_id>/prescriptions"): "write prescriptions",
    ("GET", "/doctor/medicines"): "read reference data, doctors",
    ("GET", "/prescriptions/<id:prescription_id>/print"): "read appointments, events, prescriptions",
    # The front desk (hms/web/reception.py): reception and admin, as booking.
    ("GET", "/reception"): "book appointments",
    ("GET", "/reception/patients"): "book appointments",
    ("POST", "/reception/patients"): "create / update patients",
    ("POST", "/reception/appointments"): "book appointments",
    ("POST", "/reception/appointments/<id:appointment_id>/status"): "book appointments",
    ("GET", "/reception/no-shows"): "book appointments",
    ("GET", "/reception/slip/<id:appointment_id>"): "book appointments",
    # The day-end reports (hms/reports) and the admin's reports page (hms/web/reports.py).
    ("GET", "/api/reports/daily"): "reports",
    ("GET", "/api/reports/receivables"): "reports",
    ("GET", "/api/reports/cash-up"): "a cashier's cash-up",
    ("GET", "/admin/reports"): "reports",
    # The administrator's console (hms/web/admin.py, admin_reference.py): admin only.
    ("GET", "/admin"): "the admin's console",
    ("GET", "/admin/staff"): "staff accounts, reference-data writes",
    ("POST", "/admin/staff"): "staff accounts, reference-data writes",
    ("GET", "/admin/staff/<id:staff_id>"): "staff accounts, reference-data writes",
    ("POST", "/admin/staff/<id:staff_id>"): "staff accounts, reference-data writes",
    ("POST", "/admin/staff/<id:staff_id>/active"): "staff accounts, reference-data writes",
    ("POST", "/admin/staff/<id:staff_id>/password"): "staff accounts, reference-data writes",
    ("GET", "/admin/reference/<name>"): "staff accounts, reference-data writes",
    ("POST", "/admin/reference/<name>"): "staff accounts, reference-data writes",
    ("GET", "/admin/reference/<name>/<id:item_id>"): "staff accounts, reference-data writes",
    ("POST", "/admin/reference/<name>/<id:item_id>"): "staff accounts, reference-data writes",
    ("POST", "/admin/reference/<name>/<id:item_id>/delete"): "staff accounts, reference-data writes",
    # The till (hms/web/cashier.py): cashier and admin; refunds and voids admin only.
    ("GET", "/cashier"): "the cashier's screen",
    ("GET", "/cashier/bills"): "the cashier's screen",
    ("POST", "/cashier/bills/<id:bill_id>/payments"): "the cashier's screen",
    ("POST", "/cashier/bills/<id:bill_id>/prescribed"): "the cashier's screen",
    ("POST", "/cashier/bills/<id:bill_id>/refunds"): "refunds, void a bill",
    ("POST", "/cashier/bills/<id:bill_id>/void"): "refunds, void a bill",
    ("GET", "/cashier/bills/<id:bill_id>/receipt"): "the cashier's screen",
}
PUBLIC_ROUTES = {
    ("POST", "/api/auth/token"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/docs"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/static/<path:filename>"),
    ("GET", "/t/<ticket>"),
    ("GET", "/api/tickets/<ticket>"),
    ("GET", "/api/tickets/<ticket>/stream"),
}


def _routes(app):
    """(method, rule) -> endpoint for every route and method (HEAD answers as GET)."""
    return {
        (method, rule.rule): rule.endpoint
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"OPTIONS"}
    }


def _own_records_roles(policy: tuple[str, ...]) -> set[str]:
    """The roles a view admits only on their own records (no action of it frees them)."""
    admitted = {role for action in policy for role in roles.roles_for(action)}
    return {
        role
        for role in admitted
        if all(roles.own_records_only(role, action) for action in policy if roles.may(role, action))
    }


def test_every_route_admits_exactly_the_roles_of_its_api_md_row(app):
    routes = _routes(app)
    expected, actual = {}, {}
    with app.test_request_context():
        for (method, rule), endpoint in routes.items():
            key = ("GET" if method == "HEAD" else method, rule)
            if key in PUBLIC_ROUTES:
                expected[method, rule] = PUBLIC
            else:
                allowed, own = API_MATRIX[ROUTES[key]]
                expected[method, rule] = (frozenset(allowed), frozenset(own))
            declared = roles_of(endpoint, method)
            if declared == PUBLIC:
                actual[method, rule] = PUBLIC
            else:
                own = _own_records_roles(policy_of(endpoint, method))
                actual[method, rule] = (declared, frozenset(own))
    assert actual == expected
    # Every row of the tables is a route: a removed route must leave them too.
    assert {("GET" if m == "HEAD" else m, r) for m, r in routes} == set(ROUTES) | PUBLIC_ROUTES


# ---- adding a role ----------------------------------------------------------------------


@pytest.fixture
def with_nurse(monkeypatch):
    """Make the one edit that adds a role to a copy of hms/core/roles.py (the name in ROLES),
    grant it the given actions, and run the app on the copy's tables."""

    def add(*granted: str) -> None:
        source = Path(roles.__file__).read_text()
        line = "ROLES: tuple[str, ...] = (ADMIN, RECEPTION, DOCTOR, CASHIER, DISPLAY)"
        assert line in source
        edited = source.replace(line, line[:-1] + ', "nurse")')
        tables: dict = {"__name__": "hms.core.roles_with_a_nurse"}
        exec(compile(edited, roles.__file__, "exec"), tables)  # noqa: S102 - the module, one line changed
        matrix = dict(tables["MATRIX"])
        for action in granted:
            matrix[action] = matrix[action] | {"nurse"}
        monkeypatch.setattr(roles, "ROLES", tables["ROLES"])
        monkeypatch.setattr(roles, "MATRIX", matrix)
        monkeypatch.setattr(roles, "OWN_RECORDS_ONLY", tables["OWN_RECORDS_ONLY"])
        monkeypatch.setattr(roles, "MASKED_QUEUE", tables["MASKED_QUEUE"])

    return add


def _routes_admitting(app, role: str) -> set[tuple[str, str]]:
    with app.test_request_context():
        return {
            key
            for key, endpoint in _routes(app).items()
            if key[0] != "HEAD" and (policy := roles_of(endpoint, key[0])) != PUBLIC and role in policy
        }


def test_a_new_role_gets_only_what_every_account_gets(app, with_nurse, as_role):
    with_nurse()
    assert _routes_admitting(app, "nurse") == {("GET", "/api/auth/me"), ("GET", "/")}
    assert not roles.sees_masked_queue("nurse")
    nurse = as_role("nurse")
    assert nurse.get("/api/auth/me").get_json()["role"] == "nurse"
    # No staff read by default: the reads every other staff role has are 403.
    for url in ("/api/patients", "/api/doctors", "/api/appointments", "/api/bills", "/api/departments"):
        assert nurse.get(url).status_code == 403, url
    assert nurse.get("/api/queue/1").status_code == 403


def test_a_new_role_gets_what_it_is_granted(app, with_nurse, as_role, admin):
    with_nurse("patients.read")
    assert _routes_admitting(app, "nurse") == {
        ("GET", "/api/auth/me"),
        ("GET", "/"),
        ("GET", "/api/patients"),
        ("GET", "/api/patients/duplicates"),
        ("GET", "/api/patients/<id:patient_id>"),
    }
    patient = admin.post("/api/patients", json={"name": "Asha Rao", "gender": "female", "age": 40})
    nurse = as_role("nurse")
    assert nurse.get(f"/api/patients/{patient.get_json()['id']}").status_code == 200
    assert nurse.get("/api/patients").get_json()["meta"]["total"] == 1
    assert nurse.post("/api/patients", json={"name": "B", "gender": "male"}).status_code == 403
    assert nurse.get("/api/patients/1/appointments").status_code == 403


def test_an_account_of_an_unknown_role_cannot_be_made(make_user):
    with pytest.raises(ValueError, match="nurse"):
        make_user("nurse")
