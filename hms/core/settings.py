"""The running app's settings, for the code below the routes.

Services, and the core modules they use, import no Flask: they read a configuration
value through `setting(name)`. It is for values needed deep in shared paths (a doctor's
cached profile is read by booking, the queue and the directory; every request checks a
token) where passing them down from each route would thread one number through every
caller. `app_memo` holds a per-app object, such as the memo of verified tokens, which
must not outlive the app or leak into another one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app

T = TypeVar("T")


def setting(name: str) -> Any:
    """The app's configuration value `name` (KeyError for an unknown name)."""
    return current_app.config[name]


def app_memo(key: str, make: Callable[[], T]) -> T:
    """The running app's object under `key`, made by `make()` on first use."""
    extensions = current_app.extensions
    memo = extensions.get(key)
    if memo is None:
        memo = extensions[key] = make()
    return memo


def app_object():
    """The running app itself, for work that outlives the request (a stream's loaders)."""
    return current_app._get_current_object()
