"""The prescriptions domain."""
