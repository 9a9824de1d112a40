"""WAHA and Evolution API stand-ins: real HTTP servers (tests/doubles.HttpDouble) that answer the
way each gateway does, refuse a wrong API key, session or path like the real one, and build the
ack webhooks each gateway posts back.

Shapes (checked against the gateways' sources and docs):
- WAHA: `GET /api/contacts/check-exists?phone&session` -> `{"numberExists", "chatId"}`;
  `POST /api/sendText` with `X-Api-Key` -> 201 and the engine's message: WEBJS
  `{"id": {"_serialized": "true_<chat>_<id>", ...}}`, NOWEB the Baileys `{"key": {...}}`,
  GOWS `{"id": "true_<chat>_<id>"}`; 401 `{"message": "Unauthorized"}`; a session that is not
  WORKING 422 `{"error": "Session status is not as expected...", "status": "STARTING"}`.
  Ack: `{"event": "message.ack", "payload": {"id": "true_<chat>_<id>", "ack", "ackName"}}`.
- Evolution v2: `POST /message/sendText/{instance}` with `apikey` -> 201
  `{"key": {"remoteJid", "fromMe": true, "id": "BAE5..."}, "status": "PENDING", ...}`; a number not on
  WhatsApp 400 `{"response": {"message": [{"exists": false, "jid", "number"}]}}`; an unknown
  instance 404. Ack: `{"event": "messages.update", "data": {"keyId", "messageId", "status"}}`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from urllib.parse import parse_qs, urlsplit

from tests.doubles import HttpDouble, Reply, Seen

API_KEY = "gw-key"
SESSION = "default"
TOKEN = "t" * 32
HMAC_KEY = "waha-hmac-secret"


class FakeGateway:
    """What both doubles share: scripted replies for the next sends, then a success each time."""

    kind = ""
    send_path = ""

    def __init__(self) -> None:
        self.http = HttpDouble(self.serve)
        self.replies: list[Reply] = []  # answers to the next send calls, in order
        self.not_on_whatsapp: set[str] = set()  # digits the gateway reports as not on WhatsApp
        self.message_ids: list[str] = []  # the ack ids of the messages it took, in order
        self._lock = threading.Lock()

    def __enter__(self) -> FakeGateway:
        self.http.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.http.__exit__(*exc)

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def sends(self) -> list[Seen]:
        return [s for s in self.http.seen if s.method == "POST" and urlsplit(s.path).path == self.send_path]

    def serve(self, seen: Seen) -> Reply:  # pragma: no cover - each double has its own
        raise NotImplementedError

    def scripted(self) -> Reply | None:
        with self._lock:
            return self.replies.pop(0) if self.replies else None

    def remember(self, message_id: str) -> None:
        with self._lock:
            self.message_ids.append(message_id)


class Waha(FakeGateway):
    kind = "waha"
    send_path = "/api/sendText"
    ACKS = {"pending": (0, "PENDING"), "sent": (1, "SERVER"), "delivered": (2, "DEVICE"),
            "read": (3, "READ"), "played": (4, "PLAYED"), "failed": (-1, "ERROR")}

    def __init__(self, engine: str = "WEBJS") -> None:
        super().__init__()
        self.engine = engine
        self.check_reply: Reply | None = None  # set to script the check-exists answer (older engines: 501)

    def serve(self, seen: Seen) -> Reply:
        if seen.headers.get("X-Api-Key") != API_KEY:
            return Reply(401, {"message": "Unauthorized", "statusCode": 401})
        url = urlsplit(seen.path)
        if seen.method == "GET" and url.path == "/api/contacts/check-exists":
            return self.check_exists(parse_qs(url.query))
        if seen.method == "POST" and url.path == self.send_path:
            body = seen.json
            if body.get("session") != SESSION:
                return Reply(404, {"message": f"We didn't find a session with name '{body.get('session')}'",
                                   "error": "Not Found", "statusCode": 404})
            return self.scripted() or Reply(201, self.sent_message(body["chatId"], body["text"]))
        return Reply(404, {"message": f"Cannot {seen.method} {url.path}", "error": "Not Found", "statusCode": 404})

    def check_exists(self, query: dict) -> Reply:
        if self.check_reply is not None:
            return self.check_reply
        phone = query.get("phone", [""])[0]
        if query.get("session") != [SESSION]:
            return Reply(404, {"message": "session not found", "statusCode": 404})
        if phone in self.not_on_whatsapp:
            return Reply(200, {"numberExists": False})
        return Reply(200, {"numberExists": True, "chatId": f"{phone}@c.us"})

    def sent_message(self, chat_id: str, text: str) -> dict:
        """The engine's answer to sendText; remembers the id its message.ack will carry."""
        raw_id = "3EB0" + secrets.token_hex(8).upper()
        ack_id = f"true_{chat_id}_{raw_id}"
        self.remember(ack_id)
        if self.engine == "NOWEB":
            jid = chat_id.replace("@c.us", "@s.whatsapp.net")
            return {"key": {"remoteJid": jid, "fromMe": True, "id": raw_id},
                    "message": {"extendedTextMessage": {"text": text}},
                    "messageTimestamp": str(int(time.time())), "status": "PENDING"}
        if self.engine == "GOWS":
            return {"id": ack_id, "timestamp": int(time.time()), "fromMe": True, "body": text, "ack": 1}
        return {"id": {"fromMe": True, "remote": chat_id, "id": raw_id, "_serialized": ack_id},
                "_data": {"id": {"fromMe": True, "remote": chat_id, "id": raw_id, "_serialized": ack_id}},
                "ack": 0, "body": text, "type": "chat", "fromMe": True, "to": chat_id}

    def ack(self, message_id: str, status: str, **extra) -> dict:
        ack, name = self.ACKS[status]
        chat = message_id.split("_")[1] if message_id.count("_") >= 2 else "905551112233@c.us"
        return {"id": "evt_01" + secrets.token_hex(12), "timestamp": int(time.time() * 1000),
                "event": "message.ack", "session": SESSION, "engine": self.engine,
                "payload": {"id": message_id, "from": "905550000000@c.us", "to": chat, "participant": None,
                            "fromMe": True, "ack": ack, "ackName": name},
                "environment": {"tier": "CORE", "version": "2025.1.1"}, **extra}


class Evolution(FakeGateway):
    kind = "evolution"
    send_path = f"/message/sendText/{SESSION}"
    STATUSES = {"pending": "PENDING", "sent": "SERVER_ACK", "delivered": "DELIVERY_ACK", "read": "READ",
                "played": "PLAYED", "failed": "ERROR"}

    def serve(self, seen: Seen) -> Reply:
        if seen.headers.get("apikey") != API_KEY:
            return Reply(401, {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}})
        path = urlsplit(seen.path).path
        if seen.method == "POST" and path == self.send_path:
            return self.scripted() or self.send_text(seen.json)
        if seen.method == "POST" and path.startswith("/message/sendText/"):
            name = path.rsplit("/", 1)[1]
            return Reply(404, {"status": 404, "error": "Not Found",
                               "response": {"message": [f'The "{name}" instance does not exist']}})
        return Reply(404, {"status": 404, "error": "Not Found", "response": {"message": ["Not Found"]}})

    def send_text(self, body: dict) -> Reply:
        number, jid = body["number"], f"{body['number']}@s.whatsapp.net"
        if number in self.not_on_whatsapp:
            return Reply(400, {"status": 400, "error": "Bad Request",
                               "response": {"message": [{"jid": jid, "exists": False, "number": number}]}})
        message_id = "BAE5" + secrets.token_hex(6).upper()
        self.remember(message_id)
        return Reply(201, {"key": {"remoteJid": jid, "fromMe": True, "id": message_id}, "pushName": "",
                           "status": "PENDING", "message": {"conversation": body["text"]},
                           "messageType": "conversation", "messageTimestamp": int(time.time()),
                           "instanceId": "0b1c2d3e", "source": "unknown"})

    def ack(self, message_id: str, status: str, version: int = 2, **extra) -> dict:
        jid = "905551112233@s.whatsapp.net"
        if version == 1:
            data: object = {"id": message_id, "remoteJid": jid, "fromMe": True,
                            "status": self.STATUSES[status], "datetime": int(time.time() * 1000), "owner": SESSION}
        else:
            data = {"messageId": "cm" + secrets.token_hex(10), "keyId": message_id, "remoteJid": jid,
                    "fromMe": True, "participant": jid, "status": self.STATUSES[status], "instanceId": "0b1c2d3e"}
        return {"event": "messages.update", "instance": SESSION, "data": data,
                "destination": "http://wpotp/webhooks/gateway/...", "date_time": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "sender": "905550000000@s.whatsapp.net", "server_url": "http://evolution:8080", "apikey": API_KEY,
                **extra}


def gateway_for(kind: str, **options) -> FakeGateway:
    return Waha(**options) if kind == "waha" else Evolution(**options)


def waha_signature(raw: bytes, key: str = HMAC_KEY) -> str:
    return hmac.new(key.encode(), raw, hashlib.sha512).hexdigest()


def post_ack(app, body: object, token: str = TOKEN, headers: dict | None = None, path: str = ""):
    """POST a webhook body to the gateway route the way a gateway does (raw JSON bytes)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return app.test_client().post(f"/webhooks/gateway/{token}{path}", data=raw,
                                  headers={"Content-Type": "application/json", **(headers or {})})
