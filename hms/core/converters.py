"""URL converters: ids are ASCII digits within the database's INTEGER range, else 404."""

from werkzeug.routing import IntegerConverter

from hms.core.fields import MAX_ID


class IdConverter(IntegerConverter):
    # werkzeug's \d+ matches any Unicode digit and int() reads them: /api/patients/１ (a
    # full-width 1) would be patient 1.
    regex = r"[0-9]+"

    def __init__(self, map, **kwargs):  # noqa: A002 - werkzeug's signature
        super().__init__(map, min=1, max=MAX_ID)
