"""HTTP routes of the reference domain: one pair of views per registry entry.

`register(resource)` builds the collection view (list, create) and the item view (read,
change, delete) of one resource; every method declares its roles with @allow.
"""

from flask.views import MethodView

from hms.core.access import allow
from hms.core.blueprint import Blueprint
from hms.core.fields import SearchPageQuery
from hms.reference import service
from hms.reference.schemas import schemas_for
from hms.reference.service import RESOURCES, Resource

blp = Blueprint("reference", __name__, url_prefix="/api", description="Reference data")


def register(resource: Resource) -> None:
    schemas = schemas_for(resource)
    label, plural = resource.label, resource.name.replace("-", " ")

    class Collection(MethodView):
        @allow("reference.read")
        @blp.arguments(SearchPageQuery, location="query")
        @blp.response(200, schemas.page)
        def get(self, query):
            """List the items by name (?q= searches it)"""
            return service.list_items(resource, **query)

        @allow("reference.write")
        @blp.arguments(schemas.create)
        @blp.response(201, schemas.item)
        @blp.alt_response(409, description="Duplicate")
        def post(self, data):
            """Create an item"""
            return service.create_item(resource, data)

    class Item(MethodView):
        @allow("reference.read")
        @blp.response(200, schemas.item)
        def get(self, item_id):
            """One item"""
            return service.get_item(resource, item_id)

        @allow("reference.write")
        @blp.arguments(schemas.update)
        @blp.response(200, schemas.item)
        @blp.alt_response(409, description="Duplicate")
        def patch(self, changes, item_id):
            """Change an item"""
            return service.update_item(resource, item_id, changes)

        @allow("reference.write")
        @blp.response(204)
        @blp.alt_response(409, description="Still referenced")
        def delete(self, item_id):
            """Delete an item that nothing refers to"""
            service.delete_item(resource, item_id)

    # The OpenAPI summaries name the resource.
    if resource.folded_search:
        Collection.get.__doc__ = (
            f"List {plural} by {resource.search_column} (?q= searches part of the name or the "
            "generic name, accents and case ignored)"
        )
    else:
        Collection.get.__doc__ = f"List {plural} by {resource.search_column} (?q= searches it)"
    Collection.post.__doc__ = f"Create a {label}"
    Item.get.__doc__ = f"One {label}"
    Item.patch.__doc__ = f"Change a {label}"
    Item.delete.__doc__ = f"Delete a {label} that nothing refers to (409 while referenced)"

    endpoint = resource.name.replace("-", "_")
    blp.add_url_rule(f"/{resource.name}", f"{endpoint}", Collection, tags=[plural])
    blp.add_url_rule(f"/{resource.name}/<id:item_id>", f"{endpoint}_item", Item, tags=[plural])


for _resource in RESOURCES:
    register(_resource)
