"""The staff domain."""
