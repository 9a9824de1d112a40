"""SPEC §5 GET /v1/logs: the calling app's events, newest first, filtered and cursor-paged; never a code."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from tests.helpers import make_key
from wpotp.extensions import db
from wpotp.models import Event
from wpotp.util import iso

from .support import ISO_MS_Z, canceled_otp, send_otp

CODE = "739164"
ITEM = {"id", "type", "createdAt", "otpId", "messageId", "data"}
BASE = datetime(2026, 5, 17, 12, 0, 0)


@pytest.fixture
def history(app, client, api_key, run_worker):
    """Two OTPs of the default app: one verified (5 events), one canceled (2 events)."""
    verified = send_otp(client, api_key, "+905551122001", code=CODE)["id"]
    run_worker()
    r = client.post(f"/v1/otp/{verified}/verify", headers=api_key.headers, json={"code": CODE})
    assert r.status_code == 200
    canceled = canceled_otp(client, api_key, "+905551122002", code="482913")
    return {"verified": verified, "canceled": canceled}


def _logs(client, key, **params):
    return client.get("/v1/logs", headers=key.headers, query_string=params)


def _ok(client, key, **params) -> dict:
    r = _logs(client, key, **params)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json


def _stored(app, app_id: str) -> list[Event]:
    """The app's events as the API should list them: newest first, ties by id descending."""
    with app.app_context():
        rows = db.session.scalars(select(Event).where(Event.app_id == app_id)
                                  .order_by(Event.created_at.desc(), Event.id.desc())).all()
        db.session.expunge_all()
        return rows


def _restamp(app, app_id: str, stamps: list[datetime]) -> list[str]:
    """Give the app's events (oldest first) known times; returns their ids in that order."""
    with app.app_context():
        ids = db.session.scalars(select(Event.id).where(Event.app_id == app_id)
                                 .order_by(Event.created_at, Event.id)).all()
        assert len(ids) == len(stamps)
        for event_id, at in zip(ids, stamps, strict=True):
            db.session.execute(update(Event).where(Event.id == event_id).values(created_at=at))
        db.session.commit()
        return list(ids)


def _walk(client, key, limit: int, **params) -> tuple[list[str], int]:
    seen, pages, cursor = [], 0, None
    while True:
        page = _ok(client, key, limit=limit, **params, **({"cursor": cursor} if cursor else {}))
        pages += 1
        assert len(page["data"]) <= limit
        seen += [item["id"] for item in page["data"]]
        cursor = page["nextCursor"]
        if cursor is None:
            return seen, pages
        assert pages < 50


def test_logs_list_the_apps_events_newest_first(app, client, api_key, history):
    body = _ok(client, api_key)
    assert set(body) == {"data", "nextCursor"} and body["nextCursor"] is None
    stored = _stored(app, api_key.app_id)
    assert [item["id"] for item in body["data"]] == [e.id for e in stored]
    assert len(body["data"]) == 7
    for item, event in zip(body["data"], stored, strict=True):
        assert set(item) == ITEM
        assert ISO_MS_Z.match(item["createdAt"])
        assert (item["type"], item["createdAt"], item["otpId"]) == (event.type, iso(event.created_at), event.otp_id)
    stamps = [item["createdAt"] for item in body["data"]]
    assert stamps == sorted(stamps, reverse=True)


def test_logs_filter_by_type_and_otp(app, client, api_key, history):
    canceled = _ok(client, api_key, type="otp.canceled")["data"]
    assert [(i["type"], i["otpId"]) for i in canceled] == [("otp.canceled", history["canceled"])]

    mine = _ok(client, api_key, otpId=history["verified"])["data"]
    assert sorted(i["type"] for i in mine) == sorted(
        ["otp.queued", "otp.sent", "otp.delivered", "otp.read", "otp.verified"])
    assert {i["otpId"] for i in mine} == {history["verified"]}

    both = _ok(client, api_key, otpId=history["verified"], type="otp.sent")["data"]
    assert [i["type"] for i in both] == ["otp.sent"]
    assert _ok(client, api_key, type="message.sent")["data"] == []


def test_logs_filter_by_time_from_inclusive_to_exclusive(app, client, api_key, history):
    ids = _restamp(app, api_key.app_id, [BASE + timedelta(seconds=i) for i in range(7)])
    window = _ok(client, api_key, **{"from": iso(BASE + timedelta(seconds=2)), "to": iso(BASE + timedelta(seconds=5))})
    assert [i["id"] for i in window["data"]] == [ids[4], ids[3], ids[2]]
    since = _ok(client, api_key, **{"from": "2026-05-17T12:00:05Z"})
    assert [i["id"] for i in since["data"]] == [ids[6], ids[5]]
    before = _ok(client, api_key, to="2026-05-17T12:00:01.000Z")
    assert [i["id"] for i in before["data"]] == [ids[0]]


@pytest.mark.parametrize("same_time", [False, True])
def test_cursor_paging_walks_every_event_once(app, client, api_key, history, same_time):
    if same_time:  # ties on createdAt are broken by id, and paging still sees each row once
        _restamp(app, api_key.app_id, [BASE] * 7)
    walked, pages = _walk(client, api_key, limit=2)
    assert walked == [e.id for e in _stored(app, api_key.app_id)]
    assert len(set(walked)) == 7 and pages == 4

    filtered, _pages = _walk(client, api_key, limit=2, otpId=history["verified"])
    assert len(filtered) == 5 and len(set(filtered)) == 5


def test_another_apps_events_are_not_visible(app, client, api_key, history):
    other = make_key(app, "other")
    theirs = canceled_otp(client, other, "+905551122003")

    mine = _ok(client, api_key, limit=100)["data"]
    assert theirs not in {i["otpId"] for i in mine}
    assert _ok(client, api_key, otpId=theirs)["data"] == []
    assert _ok(client, other, otpId=history["verified"])["data"] == []
    assert {i["otpId"] for i in _ok(client, other)["data"]} == {theirs}


@pytest.mark.parametrize("params", [
    {"type": "bogus"}, {"type": "OTP.SENT"}, {"otpId": "nope"}, {"otpId": "msg_abc"}, {"from": "yesterday"},
    {"to": "2026-13-01"}, {"limit": "0"}, {"limit": "101"}, {"limit": "many"}, {"cursor": "garbage!"},
    {"unknown": "1"},
])
def test_bad_parameters_are_a_validation_error(app, client, api_key, params):
    r = _logs(client, api_key, **params)
    assert r.status_code == 400, r.get_data(as_text=True)
    assert r.json["error"]["code"] == "VALIDATION_ERROR"


def test_logs_need_an_api_key(client):
    r = client.get("/v1/logs")
    assert r.status_code == 401


def test_no_code_appears_in_the_logs(app, client, api_key, history, outbox):
    text = client.get("/v1/logs?limit=100", headers=api_key.headers).get_data(as_text=True)
    sent_codes = [e["code"] for e in outbox()]
    assert CODE in sent_codes  # the codes really went out ...
    for code in [*sent_codes, "482913"]:
        assert code not in text  # ... and never into a log item
