"""The reference registry and the guarantees its service gives beyond the HTTP layer."""

from __future__ import annotations

import pytest
from sqlalchemy import String

from hms.reference import models
from hms.reference.service import RESOURCES


def test_every_reference_model_has_one_registry_entry():
    registered = [resource.model for resource in RESOURCES]
    declared = [models.Department, models.Specialization, models.TestType, models.Medicine]
    declared += [models.MedicineInstruction, models.Category]
    assert sorted(m.__name__ for m in registered) == sorted(m.__name__ for m in declared)
    assert len({resource.name for resource in RESOURCES}) == len(RESOURCES)


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.name)
def test_generated_schemas_follow_the_columns(resource):
    from hms.reference.schemas import schemas_for

    schemas = schemas_for(resource)
    create, update = schemas.create(), schemas.update()
    columns = resource.model.__table__.columns
    for name in resource.fields:
        column = columns[name]
        assert create.fields[name].required is (not column.nullable)
        assert update.fields[name].required is False
        if isinstance(column.type, String):
            too_long = {name: "x" * (column.type.length + 1)}
            assert name in update.validate(too_long)
            assert not update.validate({name: "x" * column.type.length})
    assert set(schemas.item().fields) == {"id", "created_at", *resource.fields}


def test_a_duplicate_that_races_past_the_check_is_409_not_500(app, monkeypatch):
    """The unique constraint is the backstop: two requests passing the check at once."""
    from hms.errors import Conflict
    from hms.extensions import db
    from hms.reference import service

    departments = next(r for r in RESOURCES if r.name == "departments")
    with app.app_context():
        service.create_item(departments, {"name": "Cardiology"})
    monkeypatch.setattr(service, "_refuse_duplicate", lambda *args, **kwargs: None)
    with app.app_context():
        with pytest.raises(Conflict):
            service.create_item(departments, {"name": "Cardiology"})
        # The session was rolled back and stays usable.
        assert service.create_item(departments, {"name": "Neurology"})["name"] == "Neurology"
        assert db.session.query(models.Department).count() == 2


def test_a_load_that_raced_a_write_is_never_served(app):
    """A reader that loaded before a write's commit stores under the old generation tag."""
    from hms.core.cache import cache_set, generation
    from hms.reference import service

    categories = next(r for r in RESOURCES if r.name == "categories")
    with app.app_context():
        item = service.create_item(categories, {"name": "Lab"})
        stale_key = f"{categories.cache_namespace}:{generation(categories.cache_namespace)}:id:{item['id']}"
        changed = service.update_item(categories, item["id"], {"name": "Laboratory"})
        cache_set(stale_key, item, 3600)  # the slow reader stores what it loaded
        assert service.get_item(categories, item["id"]) == changed
