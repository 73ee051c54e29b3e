"""hms.core.uow: hooks around the commit, rollback on any error, nesting, conflicts."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from hms.errors import Conflict


def categories(db) -> list[str]:
    """The committed category names, read on a connection of their own."""
    from hms.reference.models import Category

    with db.engine.connect() as connection:
        return list(connection.scalars(select(Category.name).order_by(Category.id)))


@pytest.fixture
def commits(db):
    """The list every COMMIT of the session appends "COMMIT" to (and the test its steps)."""
    steps: list[str] = []

    def committed(session):
        steps.append("COMMIT")

    event.listen(db.session, "after_commit", committed)
    yield steps
    event.remove(db.session, "after_commit", committed)


def test_hooks_run_in_order_around_one_commit(db, commits):
    from hms.core.uow import unit_of_work
    from hms.reference.models import Category

    steps = commits

    def before(name, then=None):
        def hook(uow):
            steps.append(name)
            # Inside the transaction: its changes are committed with the block's.
            db.session.add(Category(name=name))
            if then is not None:
                uow.before_commit(then)

        return hook

    def after(name):
        def hook(uow):
            steps.append(name)
            assert "body" in categories(db)  # committed: another connection sees it

        return hook

    with unit_of_work() as uow:
        db.session.add(Category(name="body"))
        uow.after_commit(after("after 1"))
        uow.before_commit(before("before 1", then=before("before 3")))
        uow.before_commit(before("before 2"))
        uow.after_commit(after("after 2"))
        for _ in range(3):  # a keyed hook runs once however often it is registered
            uow.after_commit(after("after once"), key="once")
        steps.append("block done")
    assert steps == [
        "block done",
        "before 1",
        "before 2",
        "before 3",  # registered by a before-commit hook: still inside the transaction
        "COMMIT",
        "after 1",
        "after 2",
        "after once",
    ]
    assert categories(db) == ["body", "before 1", "before 2", "before 3"]


def test_collect_keeps_state_for_the_hooks(db):
    from hms.core.uow import current_unit_of_work, unit_of_work

    seen = []
    with unit_of_work() as uow:
        assert current_unit_of_work() is uow
        uow.collect("bills", 1)
        assert uow.collect("bills", 2) == [1, 2]
        uow.before_commit(lambda u: seen.append(list(u.state["bills"])))
    assert seen == [[1, 2]]
    with pytest.raises(RuntimeError, match="inside unit_of_work"):
        current_unit_of_work()


@pytest.mark.parametrize("fail_in", ["block", "before-commit hook"])
def test_an_error_rolls_back_and_runs_no_after_commit_hook(db, commits, fail_in):
    from hms.core.uow import unit_of_work
    from hms.reference.models import Category

    after = []

    def fail(uow):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), unit_of_work() as uow:
        db.session.add(Category(name="lost"))
        db.session.flush()
        uow.after_commit(lambda u: after.append("ran"))
        uow.before_commit(fail if fail_in == "before-commit hook" else lambda u: after.append("before"))
        if fail_in == "block":
            fail(uow)
    assert after == []
    assert commits == []
    assert categories(db) == []
    assert not db.session().in_transaction()  # rolled back at once: its locks are released
    assert db.session.scalar(select(func.count()).select_from(Category)) == 0


def test_a_nested_unit_of_work_joins_the_outer_one(db, commits):
    from hms.core.uow import unit_of_work
    from hms.reference.models import Category

    steps = commits
    with unit_of_work() as outer:
        with unit_of_work(conflict="inner words") as inner:
            assert inner is outer
            db.session.add(Category(name="inner"))
            db.session.flush()
            inner.before_commit(lambda u: steps.append("inner before"))
            inner.after_commit(lambda u: steps.append("inner after"))
        assert steps == []  # the inner block neither committed (no COMMIT) nor ran its hooks
        assert db.session().in_transaction()
        steps.append("outer block done")
    assert steps == ["outer block done", "inner before", "COMMIT", "inner after"]
    assert categories(db) == ["inner"]

    with pytest.raises(RuntimeError), unit_of_work():
        with unit_of_work() as inner:
            db.session.add(Category(name="rolled back with the outer"))
            inner.after_commit(lambda u: steps.append("never"))
        raise RuntimeError("the outer block fails after the inner one ended")
    assert categories(db) == ["inner"]
    assert "never" not in steps


@pytest.mark.parametrize("when", ["in the block", "at the commit"])
def test_a_unique_key_violation_is_a_conflict_with_the_callers_words(db, when):
    from hms.core.uow import unit_of_work
    from hms.reference.models import Category

    with unit_of_work():
        db.session.add(Category(name="Lab"))
    after = []
    with pytest.raises(Conflict) as raised, unit_of_work(conflict="A category with this name exists.") as uow:
        uow.after_commit(lambda u: after.append("ran"))
        db.session.add(Category(name="Lab"))
        if when == "in the block":
            db.session.flush()
    assert raised.value.message == "A category with this name exists."
    assert raised.value.status_code == 409
    assert isinstance(raised.value.__cause__, IntegrityError)
    assert after == []
    assert categories(db) == ["Lab"]


def test_without_words_the_integrity_error_propagates(db):
    from hms.core.uow import unit_of_work
    from hms.reference.models import Category

    with unit_of_work():
        db.session.add(Category(name="Lab"))
    with pytest.raises(IntegrityError), unit_of_work():
        db.session.add(Category(name="Lab"))
    assert categories(db) == ["Lab"]


def test_a_failing_after_commit_hook_is_logged_not_raised(db, caplog):
    from hms.core.uow import unit_of_work
    from hms.reference.models import Category

    ran = []

    def broken_push(uow):
        raise ConnectionError("redis is down")

    with caplog.at_level(logging.ERROR, logger="hms.core.uow"), unit_of_work() as uow:
        db.session.add(Category(name="kept"))
        uow.after_commit(broken_push)
        uow.after_commit(lambda u: ran.append("next hook"))
    assert categories(db) == ["kept"]  # the change stays committed
    assert ran == ["next hook"]  # and the hooks after the broken one still run
    [record] = [r for r in caplog.records if r.name == "hms.core.uow"]
    assert "broken_push" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], ConnectionError)
