"""The realtime domain."""
