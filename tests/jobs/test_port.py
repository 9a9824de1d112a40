"""The queue port (wpotp/jobs/port.py): services hand work to the app's port, never to RQ or
jobs/enqueue.py themselves; the port is built by create_app."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from wpotp.extensions import job_queue
from wpotp.jobs.port import RQJobQueue

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
