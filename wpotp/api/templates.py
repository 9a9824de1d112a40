"""/v1/templates: the message templates an OTP can use."""

from __future__ import annotations

from flask import jsonify
from sqlalchemy import select

from ..extensions import db
from ..models import Template
from . import bp
from .auth import require_key
from .serializers import template_item


@bp.get("/templates")
def list_templates():
    require_key()
    rows = db.session.scalars(select(Template).order_by(Template.name, Template.language)).all()
    return jsonify({"data": [template_item(t) for t in rows]})
