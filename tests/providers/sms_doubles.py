"""Real HTTP doubles of the SMS providers on 127.0.0.1. Each refuses what the real API refuses
(missing or wrong credentials, a wrong content type, missing or malformed fields), so a request of
the wrong shape fails the test instead of passing against a lenient server."""

from __future__ import annotations

import base64
import json
import secrets
from urllib.parse import parse_qs

from tests.doubles import HttpDouble, Reply, Seen

TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "twilio-auth-token-for-tests-0001"
TWILIO_FROM = "+15017122661"
VONAGE_KEY = "abcd1234"
VONAGE_SECRET = "vonage-secret-for-tests"
VONAGE_FROM = "wpotp"
GATEWAY_AUTH = "Authorization: Basic " + base64.b64encode(b"sms:gateway-password").decode()
GATEWAY_TOKEN = "gateway-dlr-token-0123456789abcdef"


def form_of(seen: Seen) -> dict[str, str] | None:
    """The form fields, or None when the body is not form-encoded."""
    if not seen.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
        return None
    return {k: v[0] for k, v in parse_qs(seen.body.decode(), keep_blank_values=True).items()}


class TwilioDouble(HttpDouble):
    """POST /2010-04-01/Accounts/{sid}/Messages.json. `fail` maps a recipient to a (status, code)
    the double answers with instead of a message."""

    def __init__(self):
        super().__init__(self._answer)
        self.fail: dict[str, tuple[int, int]] = {}
        self.sent: list[dict[str, str]] = []

    def _answer(self, seen: Seen) -> Reply:
        expected_auth = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
        if seen.headers.get("Authorization") != expected_auth:
            return Reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
        if seen.method != "POST" or seen.path != f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json":
            return Reply(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
        form = form_of(seen)
        if form is None or not form.get("Body"):
            return Reply(400, {"code": 21602, "message": "Message body is required.", "status": 400})
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return Reply(400, {"code": 21603, "message": "A 'From' phone number is required.", "status": 400})
        to = form.get("To", "")
        if not (to.startswith("+") and to[1:].isdigit()):
            return Reply(400, {"code": 21211, "message": f"The 'To' number {to} is not a valid phone number.",
                               "status": 400})
        if to in self.fail:
            status, code = self.fail[to]
            # Echoes the start of the text (the code, in English): wpotp must not keep it.
            return Reply(status, {"code": code, "message": f"refused {to}: {form['Body'][:6]}", "status": status})
        self.sent.append(form)
        return Reply(201, {"sid": "SM" + secrets.token_hex(16), "status": "queued", "to": to, "body": form["Body"]})


class VonageDouble(HttpDouble):
    """POST /sms/json: always HTTP 200, the outcome in messages[0].status ("0": sent)."""

    def __init__(self):
        super().__init__(self._answer)
        self.fail: dict[str, str] = {}  # digits -> Vonage status
        self.sent: list[dict[str, str]] = []

    @staticmethod
    def _status(status: str, text: str) -> Reply:
        return Reply(200, {"message-count": "1", "messages": [{"status": status, "error-text": text}]})

    def _answer(self, seen: Seen) -> Reply:
        if seen.method != "POST" or seen.path != "/sms/json":
            return Reply(404, {"error": "not found"})
        form = form_of(seen)
        if form is None:
            return self._status("2", "Missing api_key")
        if form.get("api_key") != VONAGE_KEY or form.get("api_secret") != VONAGE_SECRET:
            return self._status("4", "Bad Credentials")
        if not (form.get("from") and form.get("to") and form.get("text")):
            return self._status("2", "Missing from, to or text")
        if not form["to"].isdigit():
            return self._status("3", "Invalid Message: to must be digits in international format")
        if form["to"] in self.fail:
            return self._status(self.fail[form["to"]], "refused")
        self.sent.append(form)
        return Reply(200, {"message-count": "1", "messages": [
            {"to": form["to"], "message-id": secrets.token_hex(8).upper(), "status": "0",
             "remaining-balance": "3.14", "message-price": "0.05", "network": "28601"}]})


class AndroidGatewayDouble(HttpDouble):
    """SMS Gateway for Android's POST /message: JSON {"phoneNumbers": [...], "textMessage": {"text"}}
    with Basic auth; 202 {"id", "state"}."""

    def __init__(self):
        super().__init__(self._answer)
        self.sent: list[dict] = []
        self.status = 202

    def _answer(self, seen: Seen) -> Reply:
        name, _, value = GATEWAY_AUTH.partition(":")
        if seen.headers.get(name) != value.strip():
            return Reply(401, {"message": "Unauthorized"})
        if seen.method != "POST" or seen.path != "/message":
            return Reply(404, {"message": "not found"})
        if not seen.headers.get("Content-Type", "").startswith("application/json"):
            return Reply(400, {"message": "expected JSON"})
        try:
            body = json.loads(seen.body)
            numbers, text = body["phoneNumbers"], body["textMessage"]["text"]
        except (ValueError, KeyError, TypeError):
            return Reply(400, {"message": "phoneNumbers and textMessage.text are required"})
        if not (isinstance(numbers, list) and numbers and all(isinstance(n, str) and n.startswith("+") for n in numbers)
                and isinstance(text, str) and text):
            return Reply(400, {"message": "bad phoneNumbers or text"})
        if self.status != 202:
            return Reply(self.status, {"message": "gateway trouble"})
        self.sent.append(body)
        return Reply(202, {"id": secrets.token_hex(10), "state": "Pending",
                           "recipients": [{"phoneNumber": n, "state": "Pending"} for n in numbers]})
