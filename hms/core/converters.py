"""URL converters: ids beyond the database's INTEGER range are 404, not a storage error."""

from werkzeug.routing import IntegerConverter

from hms.core.fields import MAX_ID


class IdConverter(IntegerConverter):
    def __init__(self, map, **kwargs):  # noqa: A002 - werkzeug's signature
        super().__init__(map, min=1, max=MAX_ID)
