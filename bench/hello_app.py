"""The stack baseline: a hello-world Flask endpoint served by the same gunicorn settings.

`gunicorn -c gunicorn.conf.py bench.hello_app:app` — every measured HMS endpoint is
reported as a ratio to this one, measured in the same run.
"""

from flask import Flask

app = Flask(__name__)


@app.get("/hello")
def hello():
    return {"hello": "world"}
