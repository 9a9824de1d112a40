"""gunicorn entry point: `gunicorn wsgi:app`."""

from wpotp import create_app

app = create_app()
