"""Notification channels shared by services: text messages (SMS) and signed webhooks.

The alarm service's notifier has the same two channels in its own module; they should be
folded into this one (the auth service's security alerts use it first).

    sms_gateway(url, api_key, sign)  → LogSmsGateway (no URL: the message goes to the log)
                                      | HttpSmsGateway (POST JSON {phone, sign, text})
    post_webhook(url, payload, secret=…)  JSON POST, `X-EcoWatt-Signature: sha256=<hmac>`
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any, Protocol

import httpx

__all__ = [
    "SIGNATURE_HEADER",
    "HttpSmsGateway",
    "LogSmsGateway",
    "SmsGateway",
    "mask_phone",
    "post_webhook",
    "sign_body",
    "sms_gateway",
]

_logger = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-EcoWatt-Signature"


class SmsGateway(Protocol):
    """Sends one text message; returns a provider reference or raises."""

    async def send(self, phone: str, text: str) -> str: ...


def mask_phone(phone: str) -> str:
    """138****5678: enough to tell recipients apart in a log, not enough to call them."""
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else "****"


class LogSmsGateway:
    """Writes the message to the log instead of sending it (no provider configured)."""

    async def send(self, phone: str, text: str) -> str:
        _logger.info("SMS (log only) to %s: %s", mask_phone(phone), text)
        return "logged"


class HttpSmsGateway:
    """A generic HTTP SMS provider: POST JSON {phone, sign, text} with a bearer API key."""

    def __init__(self, url: str, api_key: str | None, sign: str, timeout_s: float = 5.0) -> None:
        self.url, self.api_key, self.sign, self.timeout_s = url, api_key, sign, timeout_s

    async def send(self, phone: str, text: str) -> str:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            response = await client.post(
                self.url, json={"phone": phone, "sign": self.sign, "text": text}, headers=headers
            )
            response.raise_for_status()
            return response.text[:200]


def sms_gateway(
    url: str | None, api_key: str | None, sign: str, timeout_s: float = 5.0
) -> SmsGateway:
    """The HTTP provider at `url`, or the log when no URL is configured."""
    if url:
        return HttpSmsGateway(url, api_key, sign, timeout_s)
    return LogSmsGateway()


def sign_body(secret: str, body: bytes) -> str:
    """The signature header value of `body`: `sha256=<hex HMAC>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post_webhook(
    url: str,
    payload: dict[str, Any],
    *,
    secret: str | None = None,
    timeout_s: float = 5.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str:
    """POST `payload` as JSON (signed when `secret` is set); returns "HTTP <status>" or
    raises httpx.HTTPError."""
    body = json.dumps(payload, ensure_ascii=False, default=str).encode()
    headers = {"Content-Type": "application/json"}
    if secret:
        headers[SIGNATURE_HEADER] = sign_body(secret, body)
    async with httpx.AsyncClient(timeout=timeout_s, transport=transport) as client:
        response = await client.post(url, content=body, headers=headers)
        response.raise_for_status()
    return f"HTTP {response.status_code}"
