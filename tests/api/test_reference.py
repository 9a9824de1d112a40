"""`reference` as the caller's idempotency key (SPEC §4)."""

from __future__ import annotations

from datetime import timedelta

from tests.helpers import make_key
from wpotp.util import utcnow

from .support import RECIPIENT, SUMMARY_FIELDS, error_of, number, send, sent, set_otp, show, verify


def test_same_reference_and_recipient_returns_the_same_otp_and_sends_once(client, api_key, run_worker, outbox):
    first = sent(client, api_key, code="1234", reference="order-9")
    again = send(client, api_key, code="1234", reference="order-9")
    assert again.status_code == 200
    assert again.get_json() == first
    assert set(again.get_json()) == SUMMARY_FIELDS
    run_worker()
    assert len(outbox(RECIPIENT)) == 1


def test_same_reference_for_another_recipient_is_reference_conflict(client, api_key):
    sent(client, api_key, reference="order-9")
    error_of(send(client, api_key, recipient=number(1), reference="order-9"), 409, "REFERENCE_CONFLICT")


def test_reference_conflict_sends_nothing(client, api_key, run_worker, outbox):
    sent(client, api_key, reference="order-9")
    send(client, api_key, recipient=number(1), reference="order-9")
    run_worker()
    assert outbox(number(1)) == []


def test_reference_of_a_verified_otp_makes_a_new_otp(client, api_key):
    first = sent(client, api_key, code="1234", reference="order-9")
    assert verify(client, api_key, first["id"], "1234").status_code == 200
    again = send(client, api_key, code="1234", reference="order-9")
    assert again.status_code == 201
    assert again.get_json()["id"] != first["id"]


def test_reference_of_a_canceled_otp_makes_a_new_otp_for_anyone(client, api_key):
    first = sent(client, api_key, reference="order-9")
    client.post(f"/v1/otp/{first['id']}/cancel", headers=api_key.headers)
    again = send(client, api_key, recipient=number(2), reference="order-9")
    assert again.status_code == 201
    assert again.get_json()["id"] != first["id"]


def test_references_are_per_app(app, client, api_key):
    other = make_key(app, "other")
    first = sent(client, api_key, reference="order-9")
    second = send(client, other, recipient=number(3), reference="order-9")
    assert second.status_code == 201
    assert second.get_json()["id"] != first["id"]


def test_repeating_a_reference_does_not_count_against_the_recipient_send_limit(client, api_key):
    first = sent(client, api_key, reference="order-9")
    for _ in range(7):
        again = send(client, api_key, reference="order-9")
        assert again.status_code == 200
        assert again.get_json()["id"] == first["id"]
    assert send(client, api_key).status_code == 201


def test_reference_of_an_otp_past_expiry_is_free_again(app, client, api_key):
    first = sent(client, api_key, reference="order-9")
    set_otp(app, first["id"], expires_at=utcnow() - timedelta(seconds=1))
    again = send(client, api_key, recipient=number(4), reference="order-9")
    assert again.status_code == 201
    assert again.get_json()["id"] != first["id"]
    assert show(client, api_key, first["id"])["status"] == "EXPIRED"
