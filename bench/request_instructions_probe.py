"""The measuring side of bench/request_instructions.py, run under valgrind against one tree.

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce \\
        python -P bench/request_instructions_probe.py --app-root TREE --requests N --kind KIND --database FILE

It reaches the app only through its public seams (the app factory, `flask create-user`,
the HTTP API through Flask's test client), so the same file measures any revision.
Only the measured requests run inside functools.reduce, the C function callgrind is told
to count in: the set-up (imports, accounts, a bill to pay) is not counted. SQLite and the
in-process cache (the embedded default): the instructions are the app's Python work per
request, the same on any machine load.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

PASSWORD = "probe-password-1"
WARM_UP = 20


def _ok(response, what: str):
    if response.status_code >= 300:
        raise RuntimeError(f"{what}: {response.status_code} {response.get_data(as_text=True)[:300]}")
    return response.get_json()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app-root", required=True, type=Path)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--kind", choices=("me", "queue", "pay"), required=True)
    parser.add_argument("--database", required=True, help="an SQLite file to create")
    parser.add_argument(
        "--setting", action="append", default=[], metavar="NAME=VALUE", help="a configuration value to set"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.app_root))
    import config
    from hms import create_app

    settings = config.TestingConfig()
    settings.SQLALCHEMY_DATABASE_URI = f"sqlite:///{args.database}"
    settings.PASSWORD_HASH_METHOD = "scrypt:1024:8:1"  # set-up only: no sign-in is measured
    for setting in args.setting:
        name, _, value = setting.partition("=")
        setattr(settings, name, value)
    app = create_app(settings)
    with app.app_context():
        app.extensions["sqlalchemy"].create_all()
    created = app.test_cli_runner().invoke(
        args=["create-user", "probe-admin", "--role", "admin", "--name", "Probe", "--password", PASSWORD]
    )
    if created.exit_code != 0:
        raise RuntimeError(created.output)
    client = app.test_client()
    token = _ok(
        client.post("/api/auth/token", json={"username": "probe-admin", "password": PASSWORD}), "sign-in"
    )
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    doctor = {"username": "probe-doctor", "password": PASSWORD, "name": "Doctor", "role": "doctor",
              "consultation_fee": "500.00", "hospital_fee": "100.00"}  # fmt: skip
    doctor_id = _ok(client.post("/api/staff", headers=auth, json=doctor), "doctor")["id"]
    patient = {"name": "Asha Kumar", "gender": "female", "age": 30}
    patient_id = _ok(client.post("/api/patients", headers=auth, json=patient), "patient")["id"]

    def bill() -> int:
        line = {"description": "Dressing", "unit_price": "600.00"}
        return _ok(
            client.post("/api/bills", headers=auth, json={"patient_id": patient_id, "items": [line]}), "bill"
        )["id"]

    def request(number: int):
        if args.kind == "me":
            return lambda: _ok(client.get("/api/auth/me", headers=auth), "me")
        if args.kind == "queue":
            return lambda: _ok(client.get(f"/api/queue/{doctor_id}", headers=auth), "queue")
        bill_id = bill()
        headers = {**auth, "Idempotency-Key": f"probe-{number}"}
        body = {"amount": "600.00", "method": "CASH", "reference": "probe"}
        return lambda: _ok(client.post(f"/api/bills/{bill_id}/payments", headers=headers, json=body), "pay")

    for number in range(WARM_UP):
        request(number)()
    cpu = 0.0
    for number in range(WARM_UP, WARM_UP + args.requests):
        call = request(number)  # the set-up of the request (a bill) is not counted
        started = time.process_time()
        functools.reduce(lambda _, __: call(), [0], None)  # counted: the request
        cpu += time.process_time() - started
    print(f"measured {args.requests} {args.kind} cpu_seconds {cpu:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
