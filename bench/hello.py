"""The ceiling of this stack: a bare Flask endpoint under wpotp's own gunicorn configuration.

    gunicorn -c gunicorn.conf.py --pythonpath bench hello:app   (bench/api.py starts it)
"""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/hello")
def hello():
    return jsonify({"hello": "world"})
