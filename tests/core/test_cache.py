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


def _count_reads(monkeypatch):
    from hms.extensions import cache

    reads = []
    get_many = cache.get_many

    def counted(*keys):
        reads.append(keys)
        return get_many(*keys)

    monkeypatch.setattr(cache, "get_many", counted)
    return reads


def test_prefetched_keys_ride_with_the_next_read_and_are_served_once(app, monkeypatch):
    from hms.core.cache import cache_get, cache_get_many, prefetch

    with app.app_context():
        cache_set("a", 1, 60)
        cache_set("b", 2, 60)
        cache_set("c", 3, 60)
    reads = _count_reads(monkeypatch)
    with app.test_request_context():
        prefetch("b", "c")
        assert cache_get("a") == 1
        assert reads == [("a", "b", "c")]
        assert cache_get_many("b", "c") == [2, 3]
        assert len(reads) == 1  # no round trip of their own
        assert cache_get_many("b", "c") == [2, 3]  # served once: the next read asks again
        assert len(reads) == 2


def test_a_write_drops_what_was_prefetched(app, monkeypatch):
    from hms.core.cache import cache_get, prefetch

    with app.app_context():
        cache_set("a", 1, 60)
        cache_set("b", "old", 60)
    reads = _count_reads(monkeypatch)
    with app.test_request_context():
        prefetch("b")
        cache_get("a")
        cache_set("b", "new", 60)
        assert cache_get("b") == "new"
        assert len(reads) == 2
