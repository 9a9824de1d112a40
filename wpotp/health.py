"""/healthz (the process answers) and /readyz (the database and Redis answer; how many workers run)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from config import provider_problems

from .extensions import db, limiter, redis_client
from .jobs.enqueue import workers_alive
from .providers.faults import last_config_fault

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@limiter.exempt
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@limiter.exempt
def readyz():
    checks = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        db.session.rollback()
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        redis_client.conn.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    provider = current_app.config["WPOTP_PROVIDER"]
    problems = provider_problems(current_app.config, provider)
    ready = all(v == "ok" for v in checks.values())
    state = {"name": provider, "complete": not problems, "problems": problems}
    body = {"status": "ready" if ready else "unavailable", "checks": checks, "provider": state}
    if checks["redis"] == "ok":
        state["lastConfigFault"] = last_config_fault(provider)
        # Not part of readiness (the web tier serves without workers), but what an operator looks for.
        body["workers"] = {"alive": workers_alive()}
    return jsonify(body), 200 if ready else 503
