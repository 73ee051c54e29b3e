"""HMSFlask skips Flask's per-call coroutine check for plain functions only."""

from __future__ import annotations


def test_a_plain_function_is_used_as_it_is(app):
    def hook():
        return 1

    assert app.ensure_sync(hook) is hook


def test_anything_else_still_goes_through_flask(app):
    async def coroutine_view():
        return 1

    try:
        wrapped = app.ensure_sync(coroutine_view)
    except RuntimeError:  # Flask without its async extra refuses: also not used as it is
        return
    assert wrapped is not coroutine_view
