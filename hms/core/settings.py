"""The one place below the routes that reads the app's configuration.

Services take what they need as arguments where a route can pass it; values a unit of
work needs after its commit (cache lifetimes) or that every caller would have to thread
through (the clinic's time zone) are read here, by name, from the running app.
"""

from __future__ import annotations

from typing import Any

from flask import current_app


def setting(name: str) -> Any:
    return current_app.config[name]


def app_object():
    """The running app itself (for work that outlives the request: a stream's loaders)."""
    return current_app._get_current_object()
