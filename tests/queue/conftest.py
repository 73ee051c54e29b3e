"""Fixtures of the queue tests: those of the appointment tests (a doctor with known fees,
patients on demand) and of the realtime tests (the test Redis, a private Redis server,
no stream lease left over from an earlier test)."""

from tests.appointments.conftest import dr, new_patient
from tests.realtime.conftest import _no_stale_leases, private_redis, redis_url

__all__ = ["_no_stale_leases", "dr", "new_patient", "private_redis", "redis_url"]
