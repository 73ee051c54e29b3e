"""The administrator's catalogues: /admin/reference/<name> (admin only).

The six reference resources of hms.reference.service (departments, specializations,
test types, medicines, medicine instructions, bill categories), each one page: the
list by name (search, 20 a page) with **Edit** and **Delete** on each row, and **Add**.
The forms are read with the API's own schemas (hms.reference.schemas) and written with
the service's create_item / update_item / delete_item, so the rules are the API's: a
duplicate is refused, and so is deleting a row still in use (the database's foreign
keys decide: a medicine on a prescription, a department with staff). Both refusals
come back in the clinic's words (IN_USE, DUPLICATE).

Adding runs under the form's idempotency key (hms.core.idempotency.run_once, the
service's unit of work joining the key's): a double submit adds one row.
"""

from __future__ import annotations

import marshmallow as ma
from flask import Blueprint, abort, redirect, render_template, request, url_for
from sqlalchemy import Numeric
from sqlalchemy.exc import IntegrityError

from hms.core.access import current_identity, page
from hms.core.idempotency import run_once
from hms.errors import Conflict, HMSError, NotFound
from hms.reference import service as reference
from hms.reference.schemas import schemas_for
from hms.reference.service import RESOURCES, Resource
from hms.web.admin import CATALOGUE_TITLES as TITLES
from hms.web.admin import DIGITS, LABELS, PAGE_SIZE, FormState, expired, page_number, pages, refused
from hms.web.forms import FORM_EXPIRED, csrf_ok, form_key, posted_key

bp = Blueprint("admin_reference", __name__, url_prefix="/admin/reference", template_folder="templates")

BY_NAME: dict[str, Resource] = {resource.name: resource for resource in RESOURCES}
SCHEMAS = {resource.name: schemas_for(resource) for resource in RESOURCES}
# Why a row cannot be deleted, by resource (what refers to it).
IN_USE = {
    "departments": "Staff belong to this department: it cannot be deleted.",
    "specializations": "Doctors have this specialization: it cannot be deleted.",
    "test-types": "This test type is in use: it cannot be deleted.",
    "medicines": "This medicine is on prescriptions: it cannot be deleted.",
    "medicine-instructions": "This instruction is on prescriptions: it cannot be deleted.",
    "categories": "Bill items are in this category: it cannot be deleted.",
}


def _duplicate_words(resource: Resource) -> str:
    names = [LABELS.get(column, column).lower() for column in resource.unique_columns]
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"There is already a {resource.label} with this {joined}"


def _resource(name: str) -> Resource:
    resource = BY_NAME.get(name)
    if resource is None:
        abort(404)
    return resource


def _columns(resource: Resource) -> list[dict]:
    """The form's fields: name, label, whether required, money or text and its length."""
    table = resource.model.__table__.columns
    return [
        {
            "name": name,
            "label": LABELS.get(name, name.replace("_", " ").capitalize()),
            "required": not table[name].nullable,
            "money": isinstance(table[name].type, Numeric),
            "maxlength": getattr(table[name].type, "length", None),
        }
        for name in resource.fields
    ]


def _body(resource: Resource, form, *, creating: bool) -> dict:
    """The API's body from the form: text as typed; a blank optional field is left out
    when adding and cleared (null) when editing; a blank required one is sent blank (422)."""
    table = resource.model.__table__.columns
    body: dict = {}
    for name in resource.fields:
        value = form.get(name, "").strip()
        if value or not table[name].nullable:
            body[name] = value
        elif not creating:
            body[name] = None
    return body


def _refusal(resource: Resource, state: FormState, error: HMSError | ma.ValidationError) -> FormState:
    if isinstance(error, Conflict):  # a duplicate: beside the first of its columns
        words = _duplicate_words(resource)
        state.errors, state.message = {resource.unique_columns[0]: words}, words + "."
        return state
    return refused(state, error)


def _list_page(
    resource: Resource, *, status: int = 200, add: FormState | None = None, message: str | None = None
):
    q = request.args.get("q", "").replace("\x00", "").strip()[:100]
    listing = reference.list_items(resource, q=q or None, page=page_number(), limit=PAGE_SIZE)
    return (
        render_template(
            "admin/reference.html",
            resource=resource,
            resources=RESOURCES,
            titles=TITLES,
            title=TITLES[resource.name],
            columns=_columns(resource),
            rows=listing["data"],
            pager=pages(listing["meta"]),
            q=q,
            add=add or FormState(),
            message=message,
            notice=_notice(resource, request.args.get("done", ""), request.args.get("item", "")),
        ),
        status,
    )


def _notice(resource: Resource, done: str, item_id: str) -> str | None:
    """What the last change did, for the line above the list (PRG: from the query)."""
    if done == "added" and DIGITS.fullmatch(item_id):
        found = _item(resource, int(item_id))
        return f"Added {found[resource.search_column]}." if found else "Added."
    return {"added": "Added.", "deleted": "Deleted.", "saved": "Changes saved."}.get(done)


@bp.route("/<name>")
@page("reference.write")
def catalogue(name: str):
    return _list_page(_resource(name))


@bp.route("/<name>", methods=["POST"])
@page("reference.write")
def add(name: str):
    """Add: one row per rendered form (its idempotency key)."""
    resource = _resource(name)
    if not csrf_ok():
        return expired()
    key = posted_key()
    state = FormState(values=dict(request.form), key=key or form_key())
    if key is None:
        state.message = FORM_EXPIRED
        return _list_page(resource, status=400, add=state)
    try:
        data = SCHEMAS[name].create().load(_body(resource, request.form, creating=True))
        answer = run_once(
            "reference.create",
            resource.name,
            data,
            user_id=current_identity().id,
            key=key,
            work=lambda _uow: reference.create_item(resource, data),
        )
    except IntegrityError:  # a duplicate racing past the service's check
        return _list_page(resource, status=409, add=_refusal(resource, state, Conflict("duplicate")))
    except (ma.ValidationError, HMSError) as error:
        status = error.status_code if isinstance(error, HMSError) else 422
        return _list_page(resource, status=status, add=_refusal(resource, state, error))
    return redirect(url_for("admin_reference.catalogue", name=name, done="added", item=answer.body["id"]))


def _edit_page(
    resource: Resource,
    item: dict,
    *,
    status: int = 200,
    edit: FormState | None = None,
    message: str | None = None,
):
    values = {name: "" if item.get(name) is None else str(item[name]) for name in resource.fields}
    return (
        render_template(
            "admin/reference_item.html",
            resource=resource,
            resources=RESOURCES,
            titles=TITLES,
            title=TITLES[resource.name],
            columns=_columns(resource),
            item=item,
            edit=edit or FormState(values=values),
            message=message,
        ),
        status,
    )


def _item(resource: Resource, item_id: int) -> dict | None:
    try:
        return reference.get_item(resource, item_id)
    except NotFound:
        return None


def _gone(resource: Resource):
    words = f"This {resource.label} no longer exists."
    return render_template("page_error.html", title=TITLES[resource.name], message=words), 404


@bp.route("/<name>/<id:item_id>")
@page("reference.write")
def item(name: str, item_id: int):
    resource = _resource(name)
    found = _item(resource, item_id)
    return _gone(resource) if found is None else _edit_page(resource, found)


@bp.route("/<name>/<id:item_id>", methods=["POST"])
@page("reference.write")
def edit(name: str, item_id: int):
    """Save the changes of one row."""
    resource = _resource(name)
    if not csrf_ok():
        return expired()
    found = _item(resource, item_id)
    if found is None:
        return _gone(resource)
    state = FormState(values=dict(request.form))
    try:
        changes = SCHEMAS[name].update().load(_body(resource, request.form, creating=False))
        reference.update_item(resource, item_id, changes)
    except IntegrityError:
        return _edit_page(resource, found, status=409, edit=_refusal(resource, state, Conflict("duplicate")))
    except (ma.ValidationError, HMSError) as error:
        status = error.status_code if isinstance(error, HMSError) else 422
        return _edit_page(resource, found, status=status, edit=_refusal(resource, state, error))
    return redirect(url_for("admin_reference.catalogue", name=name, done="saved"))


@bp.route("/<name>/<id:item_id>/delete", methods=["POST"])
@page("reference.write")
def delete(name: str, item_id: int):
    """Delete a row nothing refers to; one in use stays, with the reason in words."""
    resource = _resource(name)
    if not csrf_ok():
        return expired()
    try:
        reference.delete_item(resource, item_id)
    except NotFound:
        return _gone(resource)
    except Conflict:
        found = _item(resource, item_id)
        if found is None:
            return _gone(resource)
        return _edit_page(resource, found, status=409, message=IN_USE[name])
    return redirect(url_for("admin_reference.catalogue", name=name, done="deleted"))
