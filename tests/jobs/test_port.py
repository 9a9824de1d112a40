"""The queue port (wpotp/jobs/port.py): services hand work to the app's port, never to RQ or
jobs/enqueue.py themselves; the port is built by create_app."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from wpotp.extensions import job_queue
from wpotp.jobs.port import RQJobQueue
from wpotp.settings import refresh_settings, settings

WPOTP = Path(__file__).resolve().parents[2] / "wpotp"
SERVICES = ["otp/service.py", "otp/delivery.py", "otp/maintenance.py", "messages.py"]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_neither_rq_nor_the_jobs_package(service):
    imports = _imports(WPOTP / service)
    assert not [m for m in imports if m == "rq" or m.startswith("rq.")], imports
    assert not [m for m in imports if m.lstrip(".").startswith("jobs")], imports


def test_the_app_has_its_queue_port(app):
    with app.app_context():
        assert isinstance(job_queue(), RQJobQueue)


# --- the services' settings (wpotp/settings.py) ----------------------------------------------------

@pytest.mark.parametrize("service", [*SERVICES, "otp/limits.py"])
def test_a_service_reads_its_settings_object_not_the_flask_config(service):
    source = (WPOTP / service).read_text()
    assert "current_app.config" not in source and ".config[" not in source


def test_the_settings_are_the_apps_config_read_once_and_frozen(make_app):
    app = make_app(SEND_BATCH=4, RESEND_MAX=2, SEND_RETRY_DELAYS=[1, 2], STUCK_QUEUED_AFTER=90)
    with app.app_context():
        built = settings()
        assert (built.send_batch, built.resend_max, built.send_retry_delays) == (4, 2, (1, 2))
        assert built.stuck_queued_after == 90
        assert built.provider == app.config["WPOTP_PROVIDER"]
        with pytest.raises(dataclasses.FrozenInstanceError):
            built.send_batch = 0
        app.config["SEND_BATCH"] = 0
        assert settings().send_batch == 4  # read once: a later change needs refresh_settings
        refresh_settings(app)
        assert settings().send_batch == 0
