"""Notification channels every service may use: SMS gateways and signed webhooks.

    sms = sms_gateway(provider="http", url=..., api_key=..., sign="EcoWatt")
    await sms.send("13800000000", "【EcoWatt】…")
    await post_webhook(url, {"type": "report", ...}, secret=secret, timeout_s=5)

A webhook body is JSON (UTF-8, Chinese unescaped); with a secret, its HMAC-SHA256 goes in
`X-EcoWatt-Signature: sha256=<hex>` so the receiver can check the sender and the body
(`verify_signature`). Phone numbers are masked in logs (`mask_phone`). Who is notified, and
when, stays with each service (auth: security alerts; reporting: subscriptions; alarm:
contacts and quiet hours — its own copy of these channels is still to be folded in here).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any, Literal, Protocol

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
    "verify_signature",
]

_logger = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-EcoWatt-Signature"


class SmsGateway(Protocol):
    """Sends one text message; returns a provider reference or raises."""

    async def send(self, phone: str, text: str) -> str: ...


def mask_phone(phone: str) -> str:
    """138****0000: enough to tell recipients apart in a log, not to call them."""
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else "****"


class LogSmsGateway:
    """The default: writes the message to the log instead of sending it."""

    async def send(self, phone: str, text: str) -> str:
        _logger.info("SMS (log only) to %s: %s", mask_phone(phone), text)
        return "logged"


class HttpSmsGateway:
    """A generic HTTP SMS provider: POST JSON {phone, sign, text} with a bearer API key."""

    def __init__(self, url: str, api_key: str | None, sign: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.api_key = api_key
        self.sign = sign
        self.timeout_s = timeout_s

    async def send(self, phone: str, text: str) -> str:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            response = await client.post(
                self.url, json={"phone": phone, "sign": self.sign, "text": text}, headers=headers
            )
            response.raise_for_status()
            return response.text[:200]


def sms_gateway(
    *,
    provider: Literal["log", "http"],
    url: str | None = None,
    api_key: str | None = None,
    sign: str = "EcoWatt",
    timeout_s: float = 5.0,
) -> SmsGateway:
    """The gateway a service's settings describe (`log` unless `http` with a URL)."""
    if provider == "http" and url:
        return HttpSmsGateway(url, api_key, sign, timeout_s)
    return LogSmsGateway()


def sign_body(secret: str, body: bytes) -> str:
    """The signature header value of `body`: `sha256=<hex HMAC>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is the signature of `body` under `secret` (constant time)."""
    return header is not None and hmac.compare_digest(sign_body(secret, body), header)


async def post_webhook(
    url: str,
    payload: dict[str, Any],
    *,
    secret: str | None = None,
    timeout_s: float = 5.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str:
    """POST `payload` as JSON, signed when a secret is given; 'HTTP <status>' or raises."""
    body = json.dumps(payload, ensure_ascii=False, default=str).encode()
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign_body(secret, body)
    async with httpx.AsyncClient(timeout=timeout_s, transport=transport) as client:
        response = await client.post(url, content=body, headers=headers)
        response.raise_for_status()
    return f"HTTP {response.status_code}"
