"""/v1/openapi.json, /v1/docs (Swagger UI from vendored swagger-ui-dist) and /v1/postman.json; each
dialect's document at /compat/<name>/openapi.json (registered by wpotp.compat.compat_blueprint).
Public: the documents describe the API, they hold no data; the request gate still counts them."""

from __future__ import annotations

from flask import current_app, jsonify, make_response, render_template, request, url_for

from ..console.auth import CONTENT_SECURITY_POLICY
from . import bp

# wpotp.apidoc reads every view's models, the dialects' included: imported when a document is
# first asked for, not here (the dialects import this module to register their documents).


@bp.get("/openapi.json")
def openapi():
    from .. import apidoc

    return jsonify(apidoc.document(current_app._get_current_object()))


@bp.get("/docs")
def docs():
    """Swagger UI, under the console's Content-Security-Policy: its scripts and styles are files of
    this server (wpotp/static/vendor/swagger-ui, wpotp/static/js/swagger-init.js)."""
    response = make_response(render_template("apidoc/docs.html", title="wpotp API", spec_url=url_for("api.openapi")))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@bp.get("/postman.json")
def postman_collection():
    from .. import apidoc
    from ..apidoc import postman

    app = current_app._get_current_object()
    dialects = {name: apidoc.document(app, name) for name in apidoc.DIALECTS if name}
    response = jsonify(postman.collection(apidoc.document(app), dialects, request.host_url.rstrip("/")))
    if request.args.get("download"):
        response.headers["Content-Disposition"] = 'attachment; filename="wpotp.postman_collection.json"'
    return response


def dialect_openapi(name: str):
    def view():
        from .. import apidoc

        return jsonify(apidoc.document(current_app._get_current_object(), name))
    view.__name__ = "openapi"
    return view
