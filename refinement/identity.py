"""Trusted tenant identity on the OpenAI-compatible server (issue 9): an ASGI middleware
that vLLM's own ``--middleware`` option installs in the API server process.

    KVCLAIMS_IDENTITY_SECRET=... KVCLAIMS_TENANTS='{"sk-alice": "alice", "gw-bob": "bob"}' \\
    [KVCLAIMS_TENANT_HEADER=x-kvclaims-tenant] \\
    vllm serve MODEL --scheduler-cls kvclaims.refinement.vllm_plugin.ClaimScheduler \\
        --middleware kvclaims.refinement.identity.TenantMiddleware

For every POST with a JSON object body, the middleware looks the request's credential up in
the operator's binding (``KVCLAIMS_TENANTS``: credential -> tenant, a JSON object or
``@file``): the value of the trusted gateway header when ``KVCLAIMS_TENANT_HEADER`` names
one, else the ``Authorization: Bearer`` key. It then replaces ``vllm_xargs.kvclaims_identity``
with the server's attestation of that tenant (model.tenancy.attest, keyed by the secret),
or removes it when no credential is bound: a client never passes one of its own. vLLM's
``to_sampling_params`` carries ``vllm_xargs`` into ``extra_args``, where ClaimScheduler
(identity = "server") verifies the attestation; a client that names a tenant in the body
(``kvclaims_tenant``) is refused there. Both processes read the secret from the environment
(the engine core inherits it), never from the logged configuration.
"""
from __future__ import annotations

import json
import os
from typing import Any, Awaitable, Callable, Dict, Mapping, Optional

from kvclaims.model.tenancy import IDENTITY_KEY, SECRET_ENV, attest, check_tenant
from kvclaims.model.claims import ClaimError

TENANTS_ENV = "KVCLAIMS_TENANTS"
HEADER_ENV = "KVCLAIMS_TENANT_HEADER"
XARGS = "vllm_xargs"


def load_binding(text: Optional[str]) -> Dict[str, str]:
    """credential -> tenant from ``KVCLAIMS_TENANTS`` (JSON, or ``@path`` of a JSON file);
    ValueError (one line) when it is not an object of non-empty strings."""
    if not text:
        return {}
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"{TENANTS_ENV}: cannot read {text[1:]} ({e.strerror})") from None
    try:
        binding = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{TENANTS_ENV} is not valid JSON ({e})") from None
    if not isinstance(binding, dict):
        raise ValueError(f"{TENANTS_ENV} must be a JSON object credential -> tenant")
    for cred, tenant in binding.items():
        try:
            check_tenant(tenant)
        except ClaimError as e:
            raise ValueError(f"{TENANTS_ENV}: {e}") from None
        if not cred:
            raise ValueError(f"{TENANTS_ENV}: a credential must be a non-empty string")
    return binding


class TenantMiddleware:
    """Pure ASGI (no response buffering): rewrites only the request body."""

    def __init__(self, app: Any, binding: Optional[Mapping[str, str]] = None,
                 secret: Optional[str] = None, header: Optional[str] = None) -> None:
        self.app = app
        self.binding = dict(load_binding(os.environ.get(TENANTS_ENV))
                            if binding is None else binding)
        self.secret = os.environ.get(SECRET_ENV, "") if secret is None else secret
        name = os.environ.get(HEADER_ENV, "") if header is None else header
        self.header = name.lower().encode("latin-1")
        if self.binding and not self.secret:
            raise ValueError(f"{TENANTS_ENV} binds tenants but {SECRET_ENV} is not set")

    def tenant_of(self, headers: Mapping[bytes, bytes]) -> Optional[str]:
        """The tenant bound to the request's credential, or None (anonymous)."""
        if self.header and self.header in headers:
            return self.binding.get(headers[self.header].decode("latin-1"))
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth[:7].lower() == "bearer ":
            return self.binding.get(auth[7:].strip())
        return None

    def rewrite(self, body: bytes, tenant: Optional[str]) -> bytes:
        """The body with the server's attestation in ``vllm_xargs`` (and the client's own,
        if any, gone); a body that is not a JSON object is left for vLLM to refuse."""
        try:
            doc = json.loads(body)
        except ValueError:
            return body
        if not isinstance(doc, dict):
            return body
        xargs = doc.get(XARGS)
        if isinstance(xargs, dict):
            xargs.pop(IDENTITY_KEY, None)
        if tenant is not None:
            xargs = xargs if isinstance(xargs, dict) else {}
            xargs[IDENTITY_KEY] = attest(self.secret, tenant)
            doc[XARGS] = xargs
        elif isinstance(xargs, dict) and not xargs:
            doc.pop(XARGS)
        return json.dumps(doc).encode()

    async def __call__(self, scope: Dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            msg = await receive()
            if msg["type"] != "http.request":       # the client went away
                await self.app(scope, _replay([msg], receive), send)
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        headers = dict(scope.get("headers") or [])
        body = self.rewrite(b"".join(chunks), self.tenant_of(headers))
        scope = dict(scope)
        scope["headers"] = [(k, v) for k, v in scope.get("headers") or []
                            if k != b"content-length"] + [
                               (b"content-length", str(len(body)).encode())]
        await self.app(scope, _replay([{"type": "http.request", "body": body,
                                        "more_body": False}], receive), send)


def _replay(msgs: list, receive: Callable[[], Awaitable[Any]]):
    async def again() -> Any:
        return msgs.pop(0) if msgs else await receive()
    return again
