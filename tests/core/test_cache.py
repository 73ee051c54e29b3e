"""hms.core.cache: values cached under a namespace's generation."""

from hms.core.cache import bump_generation, cache_set, cached_in_generation, generation


def test_a_generation_value_is_loaded_once_then_read_from_the_cache(app):
    loads = []

    def load():
        loads.append(1)
        return {"n": len(loads)}

    with app.app_context():
        assert cached_in_generation("things", "thing:1", 60, load) == {"n": 1}
        assert cached_in_generation("things", "thing:1", 60, load) == {"n": 1}
        assert len(loads) == 1


def test_a_bump_makes_the_next_read_load_again(app):
    with app.app_context():
        assert cached_in_generation("things", "thing:1", 60, lambda: "old") == "old"
        bump_generation("things")
        assert cached_in_generation("things", "thing:1", 60, lambda: "new") == "new"
        assert cached_in_generation("things", "thing:1", 60, lambda: "never loaded") == "new"


def test_a_value_stored_under_an_older_generation_is_never_served(app):
    """A reader that loaded before a write's commit stores under the tag it read."""
    with app.app_context():
        old_tag = generation("things")
        bump_generation("things")  # the write commits meanwhile
        cache_set("thing:1", (old_tag, "stale"), 60)  # the slow reader stores
        assert cached_in_generation("things", "thing:1", 60, lambda: "fresh") == "fresh"


def test_nothing_is_stored_for_a_missing_row(app):
    with app.app_context():
        assert cached_in_generation("things", "thing:2", 60, lambda: None) is None
        assert cached_in_generation("things", "thing:2", 60, lambda: "created") == "created"
