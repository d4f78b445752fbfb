"""The identity middleware (refinement/identity.py) as ASGI: what body reaches the app behind
it for each credential, and its configuration errors. The server test
(tests/vllm/test_vllm_tenants_server.py) runs it inside vLLM's API server."""
from __future__ import annotations

import asyncio
import json

import pytest

from kvclaims.model.tenancy import TenantIdentity, attest
from kvclaims.refinement.identity import TenantMiddleware, load_binding

SECRET = "s"
BINDING = {"key-a": "a", "gw-b": "b"}


def through(mw_kwargs, body, headers=(), chunks=1):
    """The body and headers the app behind the middleware receives."""
    seen = {}

    async def app(scope, receive, send):
        msg = await receive()
        seen["body"], seen["headers"] = msg["body"], dict(scope["headers"])

    mw = TenantMiddleware(app, **mw_kwargs)
    raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
    parts = [raw] if chunks == 1 else [raw[:len(raw) // 2], raw[len(raw) // 2:]]
    msgs = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
            for i, p in enumerate(parts)]

    async def receive():
        return msgs.pop(0)

    scope = {"type": "http", "method": "POST", "headers": [
        (k.encode(), v.encode()) for k, v in headers]}
    asyncio.run(mw(scope, receive, lambda m: None))
    return seen["body"], seen["headers"]


CONF = {"binding": BINDING, "secret": SECRET, "header": "x-kvclaims-tenant"}
SERVER = TenantIdentity("server", SECRET)


def xargs(body):
    return json.loads(body).get("vllm_xargs")


def test_a_bound_key_is_attested_and_a_clients_own_attestation_replaced():
    forged = {"prompt": [1], "vllm_xargs": {"kvclaims_identity": attest("x", "b"), "k": 1}}
    body, headers = through(CONF, forged, [("authorization", "Bearer key-a")], chunks=2)
    assert SERVER.resolve(xargs(body)) == "a" and xargs(body)["k"] == 1
    assert headers[b"content-length"] == str(len(body)).encode()


def test_the_gateway_header_wins_and_unbound_requests_are_anonymous():
    body, _ = through(CONF, {"prompt": [1]}, [("authorization", "Bearer key-a"),
                                              ("x-kvclaims-tenant", "gw-b")])
    assert SERVER.resolve(xargs(body)) == "b"
    for headers in ([("authorization", "Bearer nobody")], [("x-kvclaims-tenant", "b")], []):
        body, _ = through(CONF, {"prompt": [1], "vllm_xargs": {
            "kvclaims_identity": attest(SECRET, "a")}}, headers)
        assert xargs(body) is None          # the client's copy is gone, nothing added
    assert through(CONF, b"not json", [("authorization", "Bearer key-a")])[0] == b"not json"


def test_bad_configuration_is_one_line():
    with pytest.raises(ValueError, match="KVCLAIMS_TENANTS binds tenants but "
                                         "KVCLAIMS_IDENTITY_SECRET is not set"):
        TenantMiddleware(None, binding=BINDING, secret="")
    with pytest.raises(ValueError, match="KVCLAIMS_TENANTS must be a JSON object"):
        load_binding("[1]")
    with pytest.raises(ValueError, match="KVCLAIMS_TENANTS: kvclaims_tenant must be a "
                                         "non-empty string"):
        load_binding('{"k": ""}')
    with pytest.raises(ValueError, match="KVCLAIMS_TENANTS is not valid JSON"):
        load_binding("{")
    assert load_binding('{"k": "t"}') == {"k": "t"} and load_binding(None) == {}
