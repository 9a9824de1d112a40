"""GET /v1/otp: newest first, filters, cursor paging, strict query parameters (SPEC §5)."""

from __future__ import annotations

from datetime import datetime

import pytest

from .support import error_of, fields_of, number, sent, set_otp, ts, verify


def listing(client, key, **query) -> dict:
    response = client.get("/v1/otp", headers=key.headers, query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def ids(page: dict) -> list[str]:
    return [o["id"] for o in page["data"]]


def walk(client, key, **query) -> tuple[list[str], int]:
    """Every id over all pages, and how many pages it took."""
    seen, pages, cursor = [], 0, None
    while True:
        page = listing(client, key, **query, **({"cursor": cursor} if cursor else {}))
        pages += 1
        seen += ids(page)
        cursor = page["nextCursor"]
        if cursor is None or pages > 10:
            return seen, pages


def test_list_is_newest_first(client, api_key):
    made = [sent(client, api_key, recipient=number(i))["id"] for i in range(3)]
    page = listing(client, api_key)
    assert ids(page) == made[::-1]
    assert page["nextCursor"] is None
    for item in page["data"]:
        ts(item["createdAt"])
        assert item["id"].startswith("otp_")


def test_cursor_paging_with_limit_2_walks_5_otps_exactly_once(client, api_key):
    made = [sent(client, api_key, recipient=number(i))["id"] for i in range(5)]
    seen, pages = walk(client, api_key, limit=2)
    assert seen == made[::-1]
    assert pages == 3


def test_cursor_paging_breaks_ties_when_otps_share_a_timestamp(app, client, api_key):
    made = [sent(client, api_key, recipient=number(i))["id"] for i in range(5)]
    for otp_id in made:
        set_otp(app, otp_id, created_at=datetime(2026, 1, 1, 12, 0, 0, 123456))
    seen, _pages = walk(client, api_key, limit=2)
    assert sorted(seen) == sorted(made)
    assert len(set(seen)) == 5


def test_last_full_page_has_null_next_cursor(client, api_key):
    for i in range(4):
        sent(client, api_key, recipient=number(i))
    _seen, pages = walk(client, api_key, limit=2)
    assert pages == 2


def test_filter_by_status(client, api_key):
    a = sent(client, api_key, recipient=number(1), code="1234")
    sent(client, api_key, recipient=number(2))
    verify(client, api_key, a["id"], "1234")
    assert ids(listing(client, api_key, status="VERIFIED")) == [a["id"]]
    assert len(listing(client, api_key, status="QUEUED")["data"]) == 1
    assert listing(client, api_key, status="EXPIRED")["data"] == []


def test_filter_by_recipient(client, api_key):
    a = sent(client, api_key, recipient=number(1))
    sent(client, api_key, recipient=number(2))
    assert ids(listing(client, api_key, recipient=number(1))) == [a["id"]]


def test_filter_by_reference(client, api_key):
    a = sent(client, api_key, recipient=number(1), reference="order-1")
    sent(client, api_key, recipient=number(2), reference="order-2")
    assert ids(listing(client, api_key, reference="order-1")) == [a["id"]]


def test_filter_by_from_and_to(app, client, api_key):
    made = [sent(client, api_key, recipient=number(i))["id"] for i in range(3)]
    for hour, otp_id in zip((10, 11, 12), made, strict=True):
        set_otp(app, otp_id, created_at=datetime(2026, 1, 1, hour))
    assert ids(listing(client, api_key, **{"from": "2026-01-01T10:30:00.000Z", "to": "2026-01-01T11:30:00.000Z"})) \
        == [made[1]]
    assert ids(listing(client, api_key, **{"from": "2026-01-01T10:30:00Z"})) == [made[2], made[1]]
    assert ids(listing(client, api_key, to="2026-01-01T11:30:00.000Z")) == [made[1], made[0]]
    assert ids(listing(client, api_key, **{"from": "2026-01-01T13:30:00+03:00"})) == [made[2], made[1]]


@pytest.mark.parametrize(("query", "field"), [
    ({"limit": "0"}, "limit"),
    ({"limit": "101"}, "limit"),
    ({"limit": "x"}, "limit"),
    ({"status": "PENDING"}, "status"),
    ({"status": "queued"}, "status"),
    ({"from": "yesterday"}, "from"),
    ({"to": "2026-13-45"}, "to"),
    ({"recipient": "abc"}, "recipient"),
    ({"sort": "asc"}, "sort"),
    ({"cursor": "garbage-cursor"}, "cursor"),
    ({"cursor": "Zm9v"}, "cursor"),
    ({"cursor": "x" * 300}, "cursor"),
])
def test_bad_query_parameters_are_validation_errors(client, api_key, query, field):
    response = client.get("/v1/otp", headers=api_key.headers, query_string=query)
    assert field in fields_of(error_of(response, 400, "VALIDATION_ERROR"))
