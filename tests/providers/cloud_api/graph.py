"""A Meta Graph API double on tests.doubles.HttpDouble: the /messages and /message_templates
endpoints of one phone number and one WhatsApp Business account, answering like Meta.

It checks what Meta would check (path with version and ids, Bearer token, JSON body) and
answers a Graph error when the request is wrong, so a malformed call can never look sent.
Every problem it saw is kept in `problems` for the test to assert on.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections import deque
from urllib.parse import parse_qs, urlsplit

from tests.doubles import HttpDouble, Reply, Seen

VERSION = "v23.0"
PHONE_NUMBER_ID = "1234567890"
WABA_ID = "998877"
TOKEN = "test-token"
APP_SECRET = "app-secret"
VERIFY_TOKEN = "verify-me"

SETTINGS = {
    "WPOTP_PROVIDER": "cloud_api",
    "WHATSAPP_API_VERSION": VERSION,
    "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
    "WHATSAPP_WABA_ID": WABA_ID,
    "WHATSAPP_TOKEN": TOKEN,
    "WHATSAPP_APP_SECRET": APP_SECRET,
    "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
    "SEND_RETRY_DELAYS": [0, 0],
}


def meta_error(code: int, title: str, *, status: int = 400, details: str = "", kind: str = "OAuthException") -> Reply:
    """A Graph error body as Meta sends it (its title carries the "(#code)" prefix)."""
    error = {"message": f"(#{code}) {title}", "type": kind, "code": code, "fbtrace_id": "AbCdEf123"}
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return Reply(status=status, body={"error": error})


def token_expired() -> Reply:
    """Meta's answer to an expired token: HTTP 401, code 190, a title without the (#) prefix."""
    return Reply(status=401, body={"error": {
        "message": "Error validating access token: Session has expired on Friday, 16-May-26 10:00:00 PDT.",
        "type": "OAuthException", "code": 190, "error_subcode": 463, "fbtrace_id": "AbCdEf123"}})


def otp_payload(recipient: str, code: str, template: str = "wpotp_verification", language: str = "en",
                button: bool = True) -> dict:
    """SPEC §7: the AUTHENTICATION template with the code in the body and in the url button."""
    components = [{"type": "body", "parameters": [{"type": "text", "text": code}]}]
    if button:
        components.append({"type": "button", "sub_type": "url", "index": "0",
                           "parameters": [{"type": "text", "text": code}]})
    return {"messaging_product": "whatsapp", "to": recipient.lstrip("+"), "type": "template",
            "template": {"name": template, "language": {"code": language}, "components": components}}


class GraphDouble:
    """`with GraphDouble() as graph:` -> graph.url. Script sends with graph.replies.append(Reply or
    "ok"); unscripted sends succeed. graph.template_pages is what message_templates lists."""

    def __init__(self) -> None:
        self.http = HttpDouble(self._handle)
        self.url = self.http.url
        self.replies: deque[Reply | str] = deque()
        self.wamids: list[str] = []  # every wamid handed out, in order
        self.template_pages: list[list[dict]] = [[]]
        self.next_base = self.url  # where paging.next points
        self.problems: list[str] = []
        self._ids = itertools.count(1)

    def __enter__(self) -> GraphDouble:
        self.http.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.http.__exit__(*exc)

    @property
    def sends(self) -> list[Seen]:
        return [s for s in self.http.seen if s.method == "POST" and s.path.endswith("/messages")]

    def _handle(self, seen: Seen) -> Reply:
        if seen.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.problems.append(f"{seen.method} {seen.path}: bad Authorization header")
            return token_expired()
        path = urlsplit(seen.path).path
        if seen.method == "POST" and path == f"/{VERSION}/{PHONE_NUMBER_ID}/messages":
            return self._send(seen)
        if seen.method == "GET" and path == f"/{VERSION}/{WABA_ID}/message_templates":
            return self._templates(seen)
        self.problems.append(f"unexpected {seen.method} {seen.path}")
        return Reply(status=404, body={"error": {"message": "Unknown path components", "type": "OAuthException",
                                                 "code": 2500, "fbtrace_id": "AbCdEf123"}})

    def _send(self, seen: Seen) -> Reply:
        problem = _payload_problem(seen)
        if problem:
            self.problems.append(problem)
            return meta_error(100, "Invalid parameter", details=problem)
        reply = self.replies.popleft() if self.replies else "ok"
        if reply != "ok":
            return reply
        wamid = f"wamid.HBgMOTA1NTUxMTEyMjMzFQIAERgS{next(self._ids):08d}AA=="
        self.wamids.append(wamid)
        to = seen.json["to"]
        return Reply(body={"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                           "messages": [{"id": wamid, "message_status": "accepted"}]})

    def _templates(self, seen: Seen) -> Reply:
        query = parse_qs(urlsplit(seen.path).query)
        fields = set(query.get("fields", [""])[0].split(","))
        if not {"name", "language", "status", "category", "components"} <= fields:
            self.problems.append(f"message_templates asked for fields {sorted(fields)}")
        index = int(query.get("after", ["0"])[0])
        page: dict = {"data": self.template_pages[index],
                      "paging": {"cursors": {"before": str(index), "after": str(index + 1)}}}
        if index + 1 < len(self.template_pages):
            page["paging"]["next"] = (f"{self.next_base}/{VERSION}/{WABA_ID}/message_templates"
                                      f"?fields=name,language,status,category,components&limit=100&after={index + 1}")
        return Reply(body=page)


def _payload_problem(seen: Seen) -> str | None:
    if not seen.headers.get("Content-Type", "").startswith("application/json"):
        return "Content-Type is not application/json"
    try:
        body = json.loads(seen.body)
    except ValueError:
        return "body is not JSON"
    if set(body) != {"messaging_product", "to", "type", "template"} or body["messaging_product"] != "whatsapp":
        return f"unexpected top-level fields {sorted(body)}"
    if not body["to"].isdigit() or body["type"] != "template":
        return "`to` must be digits only and `type` template"
    template = body["template"]
    if not template.get("name") or not template.get("language", {}).get("code"):
        return "template name and language.code are required"
    return None


def signed(body: dict | bytes, secret: str = APP_SECRET) -> tuple[bytes, dict[str, str]]:
    """The raw body and the headers Meta sends with it (X-Hub-Signature-256 over the raw bytes)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Hub-Signature-256": signature, "Content-Type": "application/json"}


def status_webhook(*statuses: dict) -> dict:
    """Meta's webhook envelope around some statuses[] items."""
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID},
             "statuses": list(statuses)}
    return {"object": "whatsapp_business_account",
            "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": value}]}]}


def status_item(wamid: str, status: str, timestamp: int = 1779012300, errors: list[dict] | None = None) -> dict:
    item = {"id": wamid, "status": status, "timestamp": str(timestamp), "recipient_id": "905551112233"}
    if status == "sent":
        item["conversation"] = {"id": "c0ffee", "origin": {"type": "authentication"}}
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "authentication"}
    if errors:
        item["errors"] = errors
    return item
