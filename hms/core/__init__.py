"""Shared building blocks: field types, pagination, caching, time and counters."""
