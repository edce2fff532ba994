"""The shared notification channels: signed webhooks and SMS gateways, over real sockets."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from ecowatt_kernel.notify import (
    SIGNATURE_HEADER,
    HttpSmsGateway,
    LogSmsGateway,
    mask_phone,
    post_webhook,
    sign_body,
    sms_gateway,
    verify_signature,
)


class _Handler(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    status: int = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append({"path": self.path, "body": body, "headers": dict(self.headers)})
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"accepted-1")

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, Any]], type[_Handler]]]:
    received: list[dict[str, Any]] = []
    handler = type("H", (_Handler,), {"received": received})
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{http.server_port}", received, handler
    http.shutdown()


def test_signatures_and_masking() -> None:
    body = "报表已生成".encode()
    signature = sign_body("s3cret", body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify_signature("s3cret", body, signature)
    assert not verify_signature("other", body, signature)
    assert not verify_signature("s3cret", body + b"!", signature)
    assert not verify_signature("s3cret", body, None)
    assert mask_phone("13800138000") == "138****8000" and mask_phone("123") == "****"


async def test_signed_webhook(server: tuple[str, list[dict[str, Any]], type[_Handler]]) -> None:
    url, received, _ = server
    result = await post_webhook(url + "/hook", {"text": "月报", "n": 1}, secret="k")
    assert result == "HTTP 200"
    sent = received[0]
    assert json.loads(sent["body"]) == {"text": "月报", "n": 1}
    assert "月报".encode() in sent["body"]  # UTF-8, not \\u escapes
    assert verify_signature("k", sent["body"], sent["headers"][SIGNATURE_HEADER])
    await post_webhook(url, {"x": 1}, secret=None)
    assert SIGNATURE_HEADER not in received[1]["headers"]


async def test_webhook_failure_raises(
    server: tuple[str, list[dict[str, Any]], type[_Handler]],
) -> None:
    url, _, handler = server
    handler.status = 503
    with pytest.raises(httpx.HTTPStatusError):
        await post_webhook(url, {"x": 1}, secret="k")


async def test_sms_gateways(server: tuple[str, list[dict[str, Any]], type[_Handler]]) -> None:
    url, received, _ = server
    assert isinstance(sms_gateway(provider="log"), LogSmsGateway)
    assert isinstance(sms_gateway(provider="http", url=None), LogSmsGateway)
    gateway = sms_gateway(provider="http", url=url + "/sms", api_key="key", sign="EcoWatt")
    assert isinstance(gateway, HttpSmsGateway)
    assert await gateway.send("13800138000", "测试") == "accepted-1"
    sent = received[0]
    assert json.loads(sent["body"]) == {"phone": "13800138000", "sign": "EcoWatt", "text": "测试"}
    assert sent["headers"]["Authorization"] == "Bearer key"
    assert await LogSmsGateway().send("13800138000", "x") == "logged"
