"""What a process carries: create_app imports no module that only some requests or only the
workers use (each is RSS in every gunicorn worker: docs/performance.md, "Memory"), and a
worker's app (serve_http=False) none that only the web serves."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Alembic and its Mako/Pygments (migrations only), the provider HTTP client (template sync and
# webhook redelivery import it when run), cryptography's Fernet and OpenSSL bindings (sealing
# webhook secrets; the bare `cryptography` package, a version string, is imported by others).
NOT_IN_A_WEB_PROCESS = ("flask_migrate", "alembic", "mako", "requests", "cryptography.fernet", "cryptography.hazmat")


def _modules_after_create_app(tmp_path: Path, code: str = "", build: str = "create_app()") -> set[str]:
    script = (f"import json, sys\nfrom wpotp import create_app\napp = {build}\n" + code +
              "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "WPOTP_INSTANCE_DIR": str(tmp_path)})
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_a_web_process_imports_neither_migrations_nor_the_provider_client_nor_cryptography(tmp_path):
    loaded = _modules_after_create_app(tmp_path)
    assert "wpotp.console" in loaded and "wpotp.api" in loaded  # the app really was built
    assert not {m for m in loaded if m.startswith(NOT_IN_A_WEB_PROCESS)}


def test_the_modules_kept_out_still_load_where_they_are_used(tmp_path):
    loaded = _modules_after_create_app(
        tmp_path,
        "from wpotp.webhooks.signing import seal_secret, unseal_secret\n"
        "with app.app_context():\n    assert unseal_secret(seal_secret('whsec_x')) == 'whsec_x'\n"
        "import wpotp.otp.template_sync\n")
    assert {"requests", "cryptography.fernet"} <= loaded


# The API's schemas (pydantic), the console's forms and pages, the dialects and the receipt
# endpoints: a worker process serves none of them (wpotp/jobs/main.py).
WEB_ONLY = ("pydantic", "wpotp.api", "wpotp.console", "wpotp.compat", "wpotp.inbound", "wpotp.apidoc")


def test_a_worker_app_imports_nothing_only_the_web_serves_and_runs_every_job(tmp_path):
    loaded = _modules_after_create_app(
        tmp_path, "import wpotp.jobs.main, wpotp.jobs.worker, wpotp.jobs.send, wpotp.jobs.receipts, "
                  "wpotp.jobs.webhooks, wpotp.jobs.maintenance, wpotp.jobs.schedule\n",
        build="create_app(serve_http=False)")
    assert "wpotp.jobs.send" in loaded and "wpotp.metrics" in loaded  # the app and its jobs really were loaded
    assert not {m for m in loaded if m.startswith(WEB_ONLY)}
