"""A Meta Graph API double on tests.doubles.HttpDouble: the /messages and /message_templates
endpoints of one phone number and one WhatsApp Business account, answering like Meta.

It checks what Meta would check (path with version and ids, Bearer token, JSON body) and
answers a Graph error when the request is wrong, so a malformed call can never look sent.
Every problem it saw is kept in `problems` for the test to assert on.

The account's templates are `template_pages` (what GET message_templates lists, page by page,
plus what POST message_templates created). Until a test sets `template_pages`, the account
lists nothing but takes sends of the templates `wpotp init` seeds (`SEEDED`, as Meta would hold
them), so a test about sending need not script a listing. A send must name one of them,
APPROVED, with the components it needs: one body parameter per `{{n}}`, and for an
AUTHENTICATION template with an OTP button the code again as url button 0 (no button component
when it has none; codes of at most 15 characters). POST message_templates creates an
AUTHENTICATION template the way Meta validates one (authentication_templates.py), and lists it.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import zlib
from collections import deque
from urllib.parse import parse_qs, urlsplit

from tests.doubles import HttpDouble, Reply, Seen

from .authentication_templates import auth_template, creation_problem, read_back, send_problem

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


def seeded() -> list[dict]:
    """The templates `wpotp init` seeds, as Meta holds them when the business created them alike."""
    return [auth_template("wpotp_verification", "en"), auth_template("wpotp_verification", "tr"),
            utility_template("wpotp_order_update", "en", "Your order {{1}} is {{2}}.")]


def utility_template(name: str, language: str, body: str, status: str = "APPROVED") -> dict:
    return {"name": name, "language": language, "status": status, "category": "UTILITY",
            "id": str(zlib.crc32(f"{name}/{language}".encode())), "components": [{"type": "BODY", "text": body}]}


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
        self._pages: list[list[dict]] = [[]]
        self.scripted = False  # True once a test sets template_pages: then only they (and created ones) exist
        self.created: list[dict] = []  # every template Meta accepted from POST message_templates
        self.creation_status = "APPROVED"  # what a newly created (or edited) authentication template starts as
        self.edits: dict[str, int] = {}  # template id -> edits Meta took (an approved one: one a day)
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
        if seen.method == "POST" and path == f"/{VERSION}/{WABA_ID}/message_templates":
            return self._create(seen)
        if seen.method == "POST" and path.startswith(f"/{VERSION}/") and path.count("/") == 2:
            return self._edit(seen, path.rsplit("/", 1)[1])
        self.problems.append(f"unexpected {seen.method} {seen.path}")
        return Reply(status=404, body={"error": {"message": "Unknown path components", "type": "OAuthException",
                                                 "code": 2500, "fbtrace_id": "AbCdEf123"}})

    @property
    def template_pages(self) -> list[list[dict]]:
        return self._pages

    @template_pages.setter
    def template_pages(self, pages: list[list[dict]]) -> None:
        self._pages = pages
        self.scripted = True

    def template(self, name: str, language: str) -> dict | None:
        """The account's template of that name and language, as GET message_templates lists it
        (or, while the listing is not scripted, as `wpotp init` seeds it)."""
        listed = next((t for page in self._pages for t in page if t["name"] == name and t["language"] == language),
                      None)
        if listed is None and not self.scripted:
            listed = next((t for t in seeded() if t["name"] == name and t["language"] == language), None)
        return listed

    def _send(self, seen: Seen) -> Reply:
        problem = _payload_problem(seen)
        if problem:
            self.problems.append(problem)
            return meta_error(100, "Invalid parameter", details=problem)
        template = seen.json["template"]
        refusal = send_problem(template, self.template(template["name"], template["language"]["code"]))
        if refusal:
            code, title, details = refusal
            self.problems.append(f"send refused ({code}): {details}")
            return meta_error(code, title, details=details)
        reply = self.replies.popleft() if self.replies else "ok"
        if reply != "ok":
            return reply
        wamid = f"wamid.HBgMOTA1NTUxMTEyMjMzFQIAERgS{next(self._ids):08d}AA=="
        self.wamids.append(wamid)
        to = seen.json["to"]
        return Reply(body={"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                           "messages": [{"id": wamid, "message_status": "accepted"}]})

    def _create(self, seen: Seen) -> Reply:
        """POST /{waba-id}/message_templates, validated as Meta validates an authentication template."""
        try:
            body = json.loads(seen.body) if seen.headers.get("Content-Type", "").startswith("application/json") \
                else None
        except ValueError:
            body = None
        problem = creation_problem(body) if isinstance(body, dict) else "the body must be a JSON object"
        if problem is None and self.template(body["name"], body["language"]) is not None:
            self.problems.append(f"template {body['name']}/{body['language']} exists already")
            reply = meta_error(100, "Invalid parameter", details="Content in this language already exists")
            reply.body["error"]["error_subcode"] = 2388024
            return reply
        if problem:
            self.problems.append(f"template creation refused: {problem}")
            return meta_error(100, "Invalid parameter", details=problem)
        template = read_back(body, template_id=str(910000 + len(self.created)), status=self.creation_status)
        self.created.append(template)
        self.template_pages[-1].append(template)
        return Reply(body={"id": template["id"], "status": template["status"], "category": "AUTHENTICATION"})

    def _edit(self, seen: Seen, template_id: str) -> Reply:
        """POST /{template-id}: Meta edits an approved, rejected or paused template, an approved one
        at most once a day; name, language and category stay; the components are validated anew."""
        found = [(page, i) for page in self.template_pages for i, t in enumerate(page) if t["id"] == template_id]
        if not found:
            self.problems.append(f"edit of unknown template {template_id}")
            return meta_error(100, "Unsupported post request", details=f"no template {template_id}")
        page, index = found[0]
        current = page[index]
        body = seen.json if seen.headers.get("Content-Type", "").startswith("application/json") else None
        problem = None
        if not isinstance(body, dict) or not body or set(body) - {"components", "message_send_ttl_seconds"}:
            problem = "an edit takes components and/or message_send_ttl_seconds"
        elif current["status"] not in ("APPROVED", "REJECTED", "PAUSED"):
            problem = f"a {current['status']} template cannot be edited"
        elif current["status"] == "APPROVED" and self.edits.get(template_id):
            problem = "an approved template can be edited once in 24 hours"
        elif "components" in body:
            problem = creation_problem({"name": current["name"], "language": current["language"],
                                        "category": "AUTHENTICATION", **body})
        elif not isinstance(body["message_send_ttl_seconds"], int) or not 30 <= body["message_send_ttl_seconds"] <= 900:
            problem = "message_send_ttl_seconds must be 30 to 900 for an AUTHENTICATION template"
        if problem:
            self.problems.append(f"template edit refused: {problem}")
            return meta_error(100, "Invalid parameter", details=problem)
        if "components" in body:
            edited = read_back({"name": current["name"], "language": current["language"], **body},
                               template_id=template_id, status=self.creation_status)
        else:
            edited = {**current, "message_send_ttl_seconds": body["message_send_ttl_seconds"]}
        page[index] = edited
        self.edits[template_id] = self.edits.get(template_id, 0) + 1
        return Reply(body={"success": True})

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
