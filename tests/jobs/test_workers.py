"""The worker process: threads of SimpleWorkers, and the WHATSAPP_MPS cap they share."""

from __future__ import annotations

from tests.helpers import in_threads
from wpotp.jobs.worker import run_workers
from wpotp.providers.throttle import reserve_slot


def test_slots_are_spaced_by_the_cap_across_racing_callers(app):
    """40 callers racing for slots at 20/s: every reserved slot is at least 50 ms after the one before."""
    def grab(_i):
        with app.app_context():
            return reserve_slot("cloud_api", 20)[0]

    slots = sorted(in_threads(40, grab))
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert min(gaps) >= 50_000  # microseconds
    assert len(set(slots)) == 40


def test_an_idle_provider_gets_a_slot_at_once(app):
    with app.app_context():
        slot, now = reserve_slot("idle", 80)
    assert slot == now


def test_separate_providers_do_not_share_slots(app):
    with app.app_context():
        first = reserve_slot("cloud_api", 1)[0]
        other, now = reserve_slot("gateway", 1)
    assert other == now and first <= now


def test_threaded_worker_drains_every_queue(app, client, api_key):
    ids = [client.post("/v1/otp/send", headers=api_key.headers,
                       json={"recipient": f"+9055511130{i:02d}"}).json["id"] for i in range(12)]
    with app.app_context():
        run_workers(app, threads=4, burst=True)
    statuses = {client.get(f"/v1/otp/{i}", headers=api_key.headers).json["status"] for i in ids}
    assert statuses == {"READ"}
