"""Tenants on a shared server (issue 9): who a request is, what cache identity it hashes
under, and how much each tenant may claim. Pure Python, shared by the MicroRuntime's
ledger and the vLLM claim arbiter (the vLLM side adds only the HTTP middleware,
refinement/identity.py).

- **Identity.** ``TenantIdentity.resolve(extra)`` says which tenant a request is. Under
  ``identity = "server"`` (the default) the tenant is what trusted server code attested:
  ``kvclaims_identity`` = ``attest(tenant)``, a token keyed by the operator's secret
  (``KVCLAIMS_IDENTITY_SECRET``) that the middleware (or an embedding application) mints
  from a credential it checked; a tenant named in the request body (``kvclaims_tenant``)
  is refused with a reason. Under ``identity = "client"`` (single tenant / tests, only when
  configured) the body field is believed.
- **Cache identity.** ``tenant_salt(tenant, salt)`` is the cache salt a request of that
  tenant hashes under: the client's own salt, inside a namespace of the tenant (an
  injective encoding), so no salt another tenant can send hashes like this tenant's.
- **Limits.** ``ClaimLimits``: per tenant and global caps on live claims (count) and on
  protected blocks (footprint of live protecting claims); a claim over one is rejected
  with a reason naming the limit.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, fields
from typing import Any, Dict, Iterable, Mapping, Optional

from kvclaims.spec.vocab import PROTECTED_MODES

from .claims import ClaimError, ClaimSpec

TENANT_KEY = "kvclaims_tenant"
IDENTITY_KEY = "kvclaims_identity"
IDENTITY_MODES = ("server", "client")
SECRET_ENV = "KVCLAIMS_IDENTITY_SECRET"
MAX_TENANT_CHARS = 128


def check_tenant(tenant: Any) -> str:
    """A tenant name: a non-empty printable string of bounded length (ClaimError)."""
    if not isinstance(tenant, str) or not tenant:
        raise ClaimError(f"{TENANT_KEY} must be a non-empty string")
    if len(tenant) > MAX_TENANT_CHARS or not tenant.isprintable():
        raise ClaimError(f"tenant name must be printable and at most {MAX_TENANT_CHARS} "
                         f"characters")
    return tenant


def _digest(secret: bytes, tenant: str) -> str:
    return hmac.new(secret, b"kvclaims-tenant\0" + tenant.encode(), hashlib.sha256).hexdigest()


def attest(secret: str, tenant: str) -> str:
    """The token trusted server code attaches for a tenant it authenticated."""
    if not secret:
        raise ValueError(f"attesting a tenant needs a secret ({SECRET_ENV})")
    check_tenant(tenant)
    return f"{tenant}:{_digest(secret.encode(), tenant)}"


def tenant_salt(tenant: Optional[str], salt: Optional[str]) -> str:
    """The cache salt a request hashes under: its own salt inside its tenant's namespace.
    Length-prefixed, so (tenant, salt) -> salt is injective: a guessed salt only ever
    names another cache of the guesser's own tenant. No tenant: the anonymous namespace
    (the '-' never starts a length)."""
    who = "-" if tenant is None else f"{len(tenant)}:{tenant}"
    return f"kvclaims:{who}:{salt or ''}"


@dataclass(frozen=True)
class TenantIdentity:
    mode: str = "server"
    secret: str = ""

    def __post_init__(self) -> None:
        if self.mode not in IDENTITY_MODES:
            raise ValueError(f"kvclaims.identity must be one of {', '.join(IDENTITY_MODES)}, "
                             f"got {self.mode!r}")

    @property
    def server(self) -> bool:
        return self.mode == "server"

    def resolve(self, extra: Mapping[str, Any]) -> Optional[str]:
        """The request's tenant, or None (anonymous); ClaimError says why a request that
        names itself is not believed."""
        body = extra.get(TENANT_KEY)
        token = extra.get(IDENTITY_KEY)
        if not self.server:
            return None if body is None else check_tenant(body)
        if body is not None:
            raise ClaimError(f"{TENANT_KEY} in the request is not trusted (identity = "
                             f"server): the tenant comes from the server's credentials")
        if token is None:
            return None
        if not isinstance(token, str) or ":" not in token or not self.secret:
            raise ClaimError(f"{IDENTITY_KEY} is not a valid server attestation")
        tenant, digest = token.rsplit(":", 1)
        if not tenant or not hmac.compare_digest(digest, _digest(self.secret.encode(),
                                                                 tenant)):
            raise ClaimError(f"{IDENTITY_KEY} is not a valid server attestation")
        return tenant


@dataclass(frozen=True)
class ClaimLimits:
    """Caps on live claims (accepted or materialized); None = no such limit."""
    tenant_claims: Optional[int] = None
    tenant_protected_blocks: Optional[int] = None
    claims: Optional[int] = None
    protected_blocks: Optional[int] = None

    @classmethod
    def from_conf(cls, conf: Any) -> "ClaimLimits":
        """From a configuration object (``additional_config.kvclaims.limits``); ValueError
        (one line) on an unknown key or a value that is not a non-negative integer."""
        if conf is None:
            return cls()
        if not isinstance(conf, dict):
            raise ValueError("kvclaims.limits must be an object")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(map(str, conf)) - set(names))
        if unknown:
            raise ValueError(f"kvclaims.limits: unknown limit(s) {unknown} (choose from "
                             f"{', '.join(names)})")
        for k, v in conf.items():
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ValueError(f"kvclaims.limits.{k} must be an integer >= 0, got {v!r}")
        return cls(**conf)

    def violation(self, spec: ClaimSpec, live: Iterable[ClaimSpec]) -> Optional[str]:
        """The first limit the claim would exceed beside the live claims, named; or None."""
        protects = spec.protection_mode in PROTECTED_MODES
        n = n_mine = blocks = blocks_mine = 0
        for s in live:
            mine = s.owner_scope == spec.owner_scope
            n += 1
            n_mine += mine
            if s.protection_mode in PROTECTED_MODES:
                blocks += s.footprint_blocks
                blocks_mine += s.footprint_blocks if mine else 0
        fp = spec.footprint_blocks if protects else 0
        checks = (("tenant_claims", self.tenant_claims, n_mine + 1),
                  ("tenant_protected_blocks", self.tenant_protected_blocks, blocks_mine + fp),
                  ("claims", self.claims, n + 1),
                  ("protected_blocks", self.protected_blocks, blocks + fp))
        for name, limit, would in checks:
            if limit is not None and would > limit and (fp or "blocks" not in name):
                who = f" of tenant {spec.owner_scope!r}" if name.startswith("tenant") else ""
                return f"limit {name} = {limit} reached{who} (would be {would})"
        return None

    def to_json(self) -> Dict[str, Optional[int]]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
