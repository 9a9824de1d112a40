"""The WhatsApp-Web gateway provider: WAHA or Evolution API in front of a linked WhatsApp account.

Both take plain text, so the OTP goes out as its template's text with the code filled in
(SPEC §7). A 2xx means the gateway took the message, never that it arrived: the worker
marks it SENT and the gateway's ack webhooks (wpotp/inbound/gateway.py) do the rest.

WAHA (devlikeapro/waha): `GET /api/contacts/check-exists` first (WAHA's sendText answers 201
even for a number that is not on WhatsApp, and the check gives the chat id WhatsApp wants),
then `POST /api/sendText {"session","chatId","text"}` with `X-Api-Key`. Evolution API:
`POST /message/sendText/{instance} {"number","text"}` with `apikey`; it checks the number
itself and answers 400 with `"exists": false` when the number is not on WhatsApp.

Reasons in errors are short and never carry the code, the message text or the API key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from flask import current_app

from .base import NOT_ON_WHATSAPP, OutboundOtp, OutboundTemplate, Provider, ProviderError, SendResult
from .http import Response, request

# WAHA's 422 "Session status is not as expected" names the session status it found.
SESSION_NOT_READY = ("STARTING", "SCAN_QR_CODE", "STOPPED", "FAILED")
_NOT_READY_TEXT = re.compile(r"status is not as expected|connection closed|not connected|session is not",
                             re.IGNORECASE)
_NOT_ON_WHATSAPP_TEXT = re.compile(r"not (registered )?on whatsapp|not_on_whatsapp|not a whatsapp",
                                   re.IGNORECASE)
EXCERPT_LENGTH = 120


@dataclass(frozen=True)
class GatewaySettings:
    kind: str
    url: str
    api_key: str
    session: str

    @classmethod
    def current(cls) -> GatewaySettings:
        cfg = current_app.config
        return cls(kind=cfg["GATEWAY_KIND"], url=cfg["GATEWAY_URL"].rstrip("/"),
                   api_key=cfg.get("GATEWAY_API_KEY", ""), session=cfg["GATEWAY_SESSION"])


class GatewayProvider(Provider):
    name = "gateway"
    # SPEC §7: no worker exceeds WHATSAPP_MPS; a WhatsApp-Web session that floods risks a ban too.
    throttled = True

    def send_otp(self, message: OutboundOtp) -> SendResult:
        return self._send(message.recipient, message.body, hide=(message.code, message.body))

    def send_template(self, message: OutboundTemplate) -> SendResult:
        return self._send(message.recipient, message.body, hide=(message.body,))

    def _send(self, recipient: str, text: str, hide: tuple[str, ...]) -> SendResult:
        settings = GatewaySettings.current()
        if settings.kind not in CLIENTS:
            raise ProviderError(f"GATEWAY_KIND must be waha or evolution, not {settings.kind!r}", permanent=True,
                                code="gateway_kind", config_fault=True)
        client = CLIENTS[settings.kind](settings)
        hidden = tuple(h for h in (*hide, settings.api_key) if h)
        digits = recipient.lstrip("+")
        return SendResult(provider_message_id=client.send_text(digits, text, hidden))


class WahaClient:
    def __init__(self, settings: GatewaySettings):
        self.settings = settings
        self.headers = {"Accept": "application/json"}
        if settings.api_key:
            self.headers["X-Api-Key"] = settings.api_key

    def send_text(self, digits: str, text: str, hidden: tuple[str, ...]) -> str:
        chat_id = self.chat_id(digits, hidden)
        resp = request("POST", f"{self.settings.url}/api/sendText", headers=self.headers,
                       json={"session": self.settings.session, "chatId": chat_id, "text": text})
        raise_for_answer(resp, hidden)
        message_id = waha_message_id(json_or_none(resp))
        if not message_id:
            raise no_message_id(resp)
        return message_id

    def chat_id(self, digits: str, hidden: tuple[str, ...]) -> str:
        """WAHA's chat id for the number, or a not-on-WhatsApp error.

        Engines or versions without the check (404/405/501) fall back to `<digits>@c.us`.
        """
        resp = request("GET", f"{self.settings.url}/api/contacts/check-exists", headers=self.headers,
                       params={"phone": digits, "session": self.settings.session})
        if resp.status_code in (404, 405, 501):
            return f"{digits}@c.us"
        raise_for_answer(resp, hidden)
        answer = json_or_none(resp)
        if not isinstance(answer, dict):
            return f"{digits}@c.us"
        if answer.get("numberExists") is False:
            raise not_on_whatsapp()
        chat = answer.get("chatId")
        return chat if isinstance(chat, str) and "@" in chat and len(chat) <= 64 else f"{digits}@c.us"


class EvolutionClient:
    def __init__(self, settings: GatewaySettings):
        self.settings = settings
        self.headers = {"Accept": "application/json", "apikey": settings.api_key}

    def send_text(self, digits: str, text: str, hidden: tuple[str, ...]) -> str:
        instance = quote(self.settings.session, safe="")
        resp = request("POST", f"{self.settings.url}/message/sendText/{instance}", headers=self.headers,
                       json={"number": digits, "text": text})
        raise_for_answer(resp, hidden)
        answer = json_or_none(resp)
        key = answer.get("key") if isinstance(answer, dict) else None
        message_id = key.get("id") if isinstance(key, dict) else None
        if not isinstance(message_id, str) or not message_id:
            raise no_message_id(resp)
        return message_id


CLIENTS = {"waha": WahaClient, "evolution": EvolutionClient}


# --- the gateway's message id -------------------------------------------------------------------

def waha_message_id(answer: object) -> str | None:
    """The id WAHA's `message.ack` will carry for this send, from any engine's sendText answer.

    GOWS/ZAPO answer `{"id": "<id>"}`; WEBJS `{"id": {"_serialized": "true_<chat>_<id>", ...}}`;
    NOWEB the Baileys message `{"key": {"remoteJid", "fromMe", "id"}}`, whose ack id WAHA
    builds as `<fromMe>_<chat as @c.us>_<id>`.
    """
    if not isinstance(answer, dict):
        return None
    data = answer.get("_data") if isinstance(answer.get("_data"), dict) else {}
    for candidate in (answer.get("id"), answer.get("key"), data.get("id")):
        if isinstance(candidate, str) and candidate:
            return candidate
        if isinstance(candidate, dict):
            serialized = candidate.get("_serialized")
            if isinstance(serialized, str) and serialized:
                return serialized
            built = _serialize_key(candidate)
            if built:
                return built
    return None


def _serialize_key(key: dict) -> str | None:
    chat, message_id = key.get("remoteJid") or key.get("remote"), key.get("id")
    if isinstance(chat, dict):
        chat = chat.get("_serialized")
    if not (isinstance(chat, str) and chat and isinstance(message_id, str) and message_id):
        return None
    chat = chat.replace("@s.whatsapp.net", "@c.us")
    return f"{'true' if key.get('fromMe') else 'false'}_{chat}_{message_id}"


# --- error answers ------------------------------------------------------------------------------

def raise_for_answer(resp: Response, hidden: tuple[str, ...]) -> None:
    """Turn a non-2xx answer into a ProviderError that says whether retrying can help."""
    status = resp.status_code
    if 200 <= status < 300:
        return
    answer = json_or_none(resp)
    detail = excerpt(answer, hidden)
    if status in (401, 403):
        raise ProviderError(f"the gateway refused the API key (HTTP {status}); check GATEWAY_API_KEY",
                            permanent=True, code="gateway_auth", config_fault=True)
    if status == 429:
        raise ProviderError(f"the gateway is rate limiting (HTTP 429){detail}", permanent=False,
                            code="gateway_rate_limited", retry_after=retry_after(resp))
    if _reports_not_on_whatsapp(answer):
        raise not_on_whatsapp()
    if _session_not_ready(status, answer):
        raise ProviderError(f"the WhatsApp session is not ready (HTTP {status}){detail}", permanent=False,
                            code="gateway_session_not_ready")
    if status >= 500:
        raise ProviderError(f"the gateway failed (HTTP {status}){detail}", permanent=False,
                            code="gateway_unavailable")
    if status == 404 or 300 <= status < 400:
        raise ProviderError(f"the gateway answered HTTP {status}{detail}; check GATEWAY_URL and GATEWAY_SESSION",
                            permanent=True, code="gateway_not_found", config_fault=True)
    raise ProviderError(f"the gateway refused the message (HTTP {status}){detail}", permanent=True,
                        code="gateway_rejected")


def _session_not_ready(status: int, answer: object) -> bool:
    """WAHA: 422 naming a STARTING/SCAN_QR_CODE/STOPPED/FAILED session; Evolution: "Connection Closed"."""
    if isinstance(answer, dict) and answer.get("status") in SESSION_NOT_READY and status == 422:
        return True
    return any(_NOT_READY_TEXT.search(text) for text in _messages(answer))


def _reports_not_on_whatsapp(answer: object) -> bool:
    """Evolution: 400 `{"response": {"message": [{"exists": false, "jid", "number"}]}}`."""
    for item in _dicts(answer):
        if item.get("exists") is False or item.get("numberExists") is False:
            return True
    return any(_NOT_ON_WHATSAPP_TEXT.search(text) for text in _messages(answer))


def _dicts(answer: object) -> Iterable[dict]:
    if not isinstance(answer, dict):
        return
    yield answer
    response = answer.get("response")
    if isinstance(response, dict):
        message = response.get("message")
        for item in message if isinstance(message, list) else [message]:
            if isinstance(item, dict):
                yield item


def _messages(answer: object) -> list[str]:
    """The human-readable parts of a gateway's error answer (WAHA, NestJS, Evolution shapes)."""
    texts: list[str] = []
    for item in _dicts(answer):
        nested = [item.get(name) for name in ("exception", "response")]
        values = [item.get(field) for field in ("error", "message", "details")]
        values += [n.get("message") for n in nested if isinstance(n, dict)]
        for value in values:
            texts.extend(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str))
    return texts


def excerpt(answer: object, hidden: tuple[str, ...]) -> str:
    """`: <what the gateway said>`, short, with the code, the text and the API key blanked out."""
    text = " / ".join(dict.fromkeys(t.strip() for t in _messages(answer) if t.strip()))
    for secret in sorted(hidden, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    if len(text) > EXCERPT_LENGTH:
        text = text[:EXCERPT_LENGTH - 1] + "…"
    return f": {text}" if text else ""


def retry_after(resp: Response) -> float | None:
    value = resp.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def json_or_none(resp: Response) -> object:
    try:
        return resp.json()
    except ValueError:
        return None


def not_on_whatsapp() -> ProviderError:
    return ProviderError("recipient is not on WhatsApp", permanent=True, code=NOT_ON_WHATSAPP)


def no_message_id(resp: Response) -> ProviderError:
    return ProviderError(f"the gateway answered HTTP {resp.status_code} without a message id; check GATEWAY_URL",
                         permanent=True, code="gateway_bad_answer", config_fault=True)
