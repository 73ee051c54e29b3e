"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`."""

from hms import create_app

app = create_app()
