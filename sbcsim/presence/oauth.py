"""The token endpoint of an emulated Microsoft identity platform, per tenant.

A Connected Contact Center platform signs its agents in to their Microsoft tenant ("Office 365
authN for agents", direct-routing-sip.md 10.2) and reads presence through Graph with an
application token (11.2).  This module issues and checks those tokens:

* ``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials`` for an app
  registration of that tenant (client id + secret, granted application roles such as
  ``Presence.Read.All``), scope ``https://graph.microsoft.com/.default``;
* ``grant_type=password`` (the resource-owner password flow, chosen over an authorization-code
  flow because a lab can drive it with one request and no browser) for an agent's account,
  giving the delegated scopes the app was consented for (``Presence.Read``, ...).

Tokens are compact JWTs signed with HS256 (the default, deterministic, shared secret) or ES256
(P-256, deterministic signatures); their claims follow Graph access tokens: ``aud``, ``iss``,
``tid``, ``iat``/``nbf``/``exp``, ``appid``, ``oid``, ``roles`` (application) or ``scp``
(delegated).  The clock is injected: every method takes ``now`` in lab seconds, and
``AuthoritySettings.epoch`` maps lab time to the Unix time written into ``iat``/``exp``.

The endpoint logic is pure (form fields in, :class:`TokenResponse` or :class:`OAuthError` out);
``api.py`` puts it on HTTP.  Token lifetime, leeway and issuer form are not in the doc [GAP] and
are settings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from sbcsim.errors import SbcsimError
from sbcsim.presence.model import DEFAULT_EPOCH

__all__ = [
    "GRAPH_APP_ID",
    "GRAPH_AUDIENCE",
    "OIDC_SCOPES",
    "AccessClaims",
    "AppRegistration",
    "AuthoritySettings",
    "OAuthError",
    "TokenAuthority",
    "TokenBadSignature",
    "TokenError",
    "TokenExpired",
    "TokenMalformed",
    "TokenMissing",
    "TokenNotYetValid",
    "TokenResponse",
    "TokenWrongAudience",
    "TokenWrongIssuer",
    "UserAccount",
    "b64url_decode",
    "b64url_encode",
]

GRAPH_AUDIENCE = "https://graph.microsoft.com"
#: Microsoft Graph's well-known application id; scopes may be prefixed with it instead of the URL.
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
#: Sign-in scopes that name no Graph permission and are ignored when computing ``scp``.
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})

Algorithm = Literal["HS256", "ES256"]


# -- errors ----------------------------------------------------------------------------------


class OAuthError(SbcsimError):
    """A token request refused, in RFC 6749 §5.2 terms plus Entra's ``AADSTS`` code.

    ``status`` is the HTTP status: 401 for ``invalid_client``, 400 otherwise (RFC 6749 §5.2).
    """

    def __init__(self, error: str, code: int, description: str, *, status: int = 400) -> None:
        super().__init__(f"{error}: AADSTS{code}: {description}")
        self.error = error
        self.code = code
        self.description = f"AADSTS{code}: {description}"
        self.status = status


class TokenError(SbcsimError):
    """An access token was refused; ``reason`` is a stable short name for tests and logs."""

    reason = "invalid"


class TokenMissing(TokenError):
    """No bearer token at all."""

    reason = "missing"


class TokenMalformed(TokenError):
    """Not a compact JWT, or its JSON or claims have the wrong shape."""

    reason = "malformed"


class TokenBadSignature(TokenError):
    """The signature does not verify (tampered, another key, or another algorithm)."""

    reason = "bad_signature"


class TokenExpired(TokenError):
    """``exp`` has passed."""

    reason = "expired"


class TokenNotYetValid(TokenError):
    """``nbf`` is still in the future."""

    reason = "not_yet_valid"


class TokenWrongAudience(TokenError):
    """``aud`` is not Microsoft Graph."""

    reason = "wrong_audience"


class TokenWrongIssuer(TokenError):
    """``iss`` does not match the token's own tenant."""

    reason = "wrong_issuer"


# -- registrations ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppRegistration:
    """An application registered in one tenant.

    ``roles`` are the application permissions an admin granted (``Presence.Read.All``);
    ``delegated_scopes`` the delegated permissions consented for users.  A ``public_client``
    may use the password grant without a secret.
    """

    tenant_id: str
    client_id: str
    client_secret: str | None
    roles: frozenset[str] = frozenset()
    delegated_scopes: frozenset[str] = frozenset()
    public_client: bool = False
    object_id: str = ""
    display_name: str = ""


@dataclass(frozen=True, slots=True)
class UserAccount:
    """An account that can sign in with the password grant; ``object_id`` is the Graph user id."""

    tenant_id: str
    upn: str
    password: str
    object_id: str


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified token says about its bearer."""

    tenant_id: str
    app_id: str
    object_id: str
    roles: frozenset[str]
    scopes: frozenset[str]
    delegated: bool
    upn: str | None
    issued_at: float
    expires_at: float
    claims: Mapping[str, object] = field(repr=False)

    @property
    def permissions(self) -> frozenset[str]:
        """The permissions this token carries, whichever kind."""
        return self.scopes if self.delegated else self.roles


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """A successful token response (RFC 6749 §5.1 as Entra shapes it)."""

    access_token: str
    expires_in: int
    scope: str | None = None

    def as_json(self) -> dict[str, object]:
        """The response body."""
        body: dict[str, object] = {
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "ext_expires_in": self.expires_in,
            "access_token": self.access_token,
        }
        if self.scope is not None:
            body["scope"] = self.scope
        return body


@dataclass(frozen=True, slots=True)
class AuthoritySettings:
    """Token rules the doc does not state [GAP], with Entra-like defaults."""

    audience: str = GRAPH_AUDIENCE
    #: Graph access tokens are v1.0 tokens, whose issuer is the sts.windows.net form.
    issuer_template: str = "https://sts.windows.net/{tenant}/"
    token_lifetime: float = 3600.0
    algorithm: Algorithm = "HS256"
    key_id: str = "sbcsim-lab-key-1"
    #: Clock skew tolerated on ``exp``/``nbf``; 0 keeps virtual-time tests exact.
    leeway: float = 0.0
    epoch: float = DEFAULT_EPOCH

    def __post_init__(self) -> None:
        if not (math.isfinite(self.token_lifetime) and self.token_lifetime >= 1):
            raise ValueError("token_lifetime must be at least one second")
        if self.algorithm not in ("HS256", "ES256"):
            raise ValueError(f"unsupported algorithm {self.algorithm!r}")
        if not self.leeway >= 0:
            raise ValueError("leeway must be >= 0")


# -- base64url and JSON ----------------------------------------------------------------------


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode`; raises ``ValueError`` on bad input."""
    if not text or any(c not in _B64URL for c in text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _compact_json(value: Mapping[str, object]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# -- the authority ---------------------------------------------------------------------------

_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


class TokenAuthority:
    """Tenants, app registrations and accounts; issues and verifies Graph access tokens.

    ``rng`` supplies the signing key (unless ``key`` is given) and token ids, so a seeded
    ``random.Random`` makes every token of a run reproducible; by default the system's
    secure generator is used.
    """

    def __init__(
        self,
        settings: AuthoritySettings | None = None,
        *,
        key: bytes | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings or AuthoritySettings()
        self._rng = rng if rng is not None else random.SystemRandom()
        self._tenants: dict[str, str] = {}  # tenant id or domain (casefolded) -> tenant id
        self._apps: dict[tuple[str, str], AppRegistration] = {}
        self._accounts: dict[tuple[str, str], UserAccount] = {}
        self._hmac_key = b""
        self._ec_key: ec.EllipticCurvePrivateKey | None = None
        if self.settings.algorithm == "HS256":
            self._hmac_key = key if key is not None else self._rng.randbytes(32)
            if len(self._hmac_key) < 32:
                raise ValueError("an HS256 key needs at least 32 bytes (RFC 7518 §3.2)")
        else:
            if key is not None:
                secret = int.from_bytes(hashlib.sha256(key).digest(), "big")
            else:
                secret = self._rng.getrandbits(256)
            self._ec_key = ec.derive_private_key(secret % (_P256_ORDER - 1) + 1, ec.SECP256R1())

    # -- registrations -----------------------------------------------------------------------

    def add_tenant(self, tenant_id: str, *domains: str) -> None:
        """A tenant, addressable in the token URL by its id or any of its domain names."""
        if not tenant_id:
            raise ValueError("tenant id must be non-empty")
        for name in (tenant_id, *domains):
            self._tenants[name.casefold()] = tenant_id

    def tenants(self) -> tuple[str, ...]:
        """Every tenant id."""
        return tuple(dict.fromkeys(self._tenants.values()))

    def resolve_tenant(self, segment: str) -> str | None:
        """The tenant id for a URL segment (tenant id or domain), or ``None``."""
        return self._tenants.get(segment.casefold())

    def add_app(
        self,
        tenant_id: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        roles: Iterable[str] = (),
        delegated_scopes: Iterable[str] = (),
        public_client: bool = False,
        object_id: str | None = None,
        display_name: str = "",
    ) -> AppRegistration:
        """Register an application (its service principal) in ``tenant_id``."""
        self._require_tenant(tenant_id)
        if client_secret is None and not public_client:
            raise ValueError("a confidential client needs a secret")
        app = AppRegistration(
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            roles=frozenset(roles),
            delegated_scopes=frozenset(delegated_scopes),
            public_client=public_client,
            object_id=object_id or client_id,
            display_name=display_name or client_id,
        )
        self._apps[(tenant_id, client_id.casefold())] = app
        return app

    def add_user_account(
        self, tenant_id: str, upn: str, password: str, object_id: str
    ) -> UserAccount:
        """An account of ``tenant_id`` that can use the password grant."""
        self._require_tenant(tenant_id)
        account = UserAccount(tenant_id, upn, password, object_id)
        self._accounts[(tenant_id, upn.casefold())] = account
        return account

    def _require_tenant(self, tenant_id: str) -> None:
        if self._tenants.get(tenant_id.casefold()) != tenant_id:
            raise ValueError(f"unknown tenant {tenant_id!r}; add_tenant() it first")

    # -- the token endpoint ------------------------------------------------------------------

    def token_request(
        self,
        tenant: str,
        form: Mapping[str, str],
        now: float,
        *,
        basic_auth: tuple[str, str] | None = None,
    ) -> TokenResponse:
        """Handle ``POST /{tenant}/oauth2/v2.0/token``; raises :class:`OAuthError`.

        ``basic_auth`` carries (client id, secret) from an ``Authorization: Basic`` header
        (``client_secret_basic``); otherwise they come from the form (``client_secret_post``).
        """
        tenant_id = self.resolve_tenant(tenant)
        if tenant_id is None:
            raise OAuthError(
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
            )
        grant_type = form.get("grant_type", "")
        if not grant_type:
            raise _missing_parameter("grant_type")
        client_id, secret = (
            basic_auth
            if basic_auth is not None
            else (
                form.get("client_id", ""),
                form.get("client_secret"),
            )
        )
        if not client_id:
            raise _missing_parameter("client_id")
        app = self._apps.get((tenant_id, client_id.casefold()))
        if app is None:
            raise OAuthError(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant_id}'.",
            )
        if grant_type == "client_credentials":
            self._authenticate_client(app, secret)
            self._check_default_scope(form.get("scope", ""))
            token = self.issue_app_token(tenant_id, app.client_id, now)
            return TokenResponse(token, self._expires_in())
        if grant_type == "password":
            if not app.public_client or secret is not None:
                self._authenticate_client(app, secret)
            username = form.get("username", "")
            password = form.get("password", "")
            if not username:
                raise _missing_parameter("username")
            if not password:
                raise _missing_parameter("password")
            account = self._accounts.get((tenant_id, username.casefold()))
            if account is None or not hmac.compare_digest(
                account.password.encode("utf-8"), password.encode("utf-8")
            ):
                raise OAuthError(
                    "invalid_grant",
                    50126,
                    "Error validating credentials due to invalid username or password.",
                )
            scopes = self._delegated_scopes(app, form.get("scope", ""))
            token = self.issue_user_token(tenant_id, app.client_id, account.upn, scopes, now)
            return TokenResponse(
                token,
                self._expires_in(),
                scope=" ".join(f"{self.settings.audience}/{s}" for s in sorted(scopes)),
            )
        raise OAuthError(
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
        )

    def _expires_in(self) -> int:
        return int(self.settings.token_lifetime)

    @staticmethod
    def _authenticate_client(app: AppRegistration, secret: str | None) -> None:
        if not secret:
            raise OAuthError(
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'.",
                status=401,
            )
        expected = (app.client_secret or "").encode("utf-8")
        if not app.client_secret or not hmac.compare_digest(expected, secret.encode("utf-8")):
            raise OAuthError(
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                f"is the client secret value, not the client secret ID, for a secret added to "
                f"app '{app.client_id}'.",
                status=401,
            )

    def _resource_scope(self, scope: str) -> tuple[str, str] | None:
        """Split ``https://graph.microsoft.com/Presence.Read`` into (resource, name)."""
        for resource in (self.settings.audience, GRAPH_APP_ID):
            if scope.casefold().startswith(resource.casefold() + "/"):
                return resource, scope[len(resource) + 1 :]
        return None

    def _check_default_scope(self, scope: str) -> None:
        scopes = scope.split()
        if not scopes:
            raise _missing_parameter("scope")
        parsed = self._resource_scope(scopes[0]) if len(scopes) == 1 else None
        if parsed is None or parsed[1] != ".default":
            raise OAuthError(
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )

    def _delegated_scopes(self, app: AppRegistration, scope: str) -> frozenset[str]:
        requested = [s for s in scope.split() if s.casefold() not in OIDC_SCOPES]
        if not requested:
            raise _missing_parameter("scope")
        granted: set[str] = set()
        for item in requested:
            parsed = self._resource_scope(item)
            # A scope of some other resource keeps its "/" or ":": this lab issues Graph only.
            name = parsed[1] if parsed is not None else item
            if "/" in name or ":" in name:
                raise OAuthError(
                    "invalid_scope",
                    70011,
                    f"The provided value for the input parameter 'scope' is not valid. "
                    f"The scope {item} is not valid.",
                )
            if name == ".default":
                granted |= app.delegated_scopes
                continue
            match = next((s for s in app.delegated_scopes if s.casefold() == name.casefold()), None)
            if match is None:
                raise OAuthError(
                    "invalid_grant",
                    65001,
                    f"The user or administrator has not consented to use the application with "
                    f"ID '{app.client_id}'. Send an interactive authorization request for this "
                    f"user and resource (scope {name}).",
                )
            granted.add(match)
        return frozenset(granted)

    # -- issuing -----------------------------------------------------------------------------

    def issue_app_token(self, tenant_id: str, client_id: str, now: float) -> str:
        """An application token carrying the app's granted roles."""
        app = self._apps.get((tenant_id, client_id.casefold()))
        if app is None:
            raise ValueError(f"no app {client_id!r} in tenant {tenant_id!r}")
        claims = self._base_claims(tenant_id, app, now)
        claims.update({"idtyp": "app", "oid": app.object_id, "sub": app.object_id})
        if app.roles:
            claims["roles"] = sorted(app.roles)
        return self.sign(claims)

    def issue_user_token(
        self, tenant_id: str, client_id: str, upn: str, scopes: Iterable[str], now: float
    ) -> str:
        """A delegated token for the account ``upn`` through app ``client_id``."""
        app = self._apps.get((tenant_id, client_id.casefold()))
        account = self._accounts.get((tenant_id, upn.casefold()))
        if app is None or account is None:
            raise ValueError(f"no app {client_id!r} or account {upn!r} in tenant {tenant_id!r}")
        claims = self._base_claims(tenant_id, app, now)
        claims.update(
            {
                "idtyp": "user",
                "oid": account.object_id,
                "sub": account.object_id,
                "upn": account.upn,
                "unique_name": account.upn,
                "scp": " ".join(sorted(scopes)),
            }
        )
        return self.sign(claims)

    def _base_claims(self, tenant_id: str, app: AppRegistration, now: float) -> dict[str, object]:
        issued = math.floor(self.settings.epoch + now)
        return {
            "aud": self.settings.audience,
            "iss": self.settings.issuer_template.format(tenant=tenant_id),
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(self.settings.token_lifetime),
            "app_displayname": app.display_name,
            "appid": app.client_id,
            "tid": tenant_id,
            "uti": b64url_encode(self._rng.randbytes(16)),
            "ver": "1.0",
        }

    # -- signing and verification ------------------------------------------------------------

    def sign(self, claims: Mapping[str, object]) -> str:
        """A compact JWS of ``claims`` with this authority's key (any claims; tests use it)."""
        header = {"typ": "JWT", "alg": self.settings.algorithm, "kid": self.settings.key_id}
        signing_input = (
            b64url_encode(_compact_json(header)) + "." + b64url_encode(_compact_json(claims))
        )
        return signing_input + "." + b64url_encode(self._signature(signing_input.encode("ascii")))

    def _signature(self, data: bytes) -> bytes:
        if self._ec_key is None:
            return hmac.new(self._hmac_key, data, hashlib.sha256).digest()
        der = self._ec_key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def _signature_ok(self, data: bytes, signature: bytes) -> bool:
        if self._ec_key is None:
            expected = hmac.new(self._hmac_key, data, hashlib.sha256).digest()
            return hmac.compare_digest(expected, signature)
        if len(signature) != 64:
            return False
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            self._ec_key.public_key().verify(der, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    def verify(self, token: str | None, now: float) -> AccessClaims:
        """Check a bearer token at lab time ``now``; raises a :class:`TokenError` subclass.

        Checks run in this order: shape, signature, lifetime, audience, issuer — so a tampered
        token is reported as tampered even when it has also expired.
        """
        if not token:
            raise TokenMissing("Access token is empty.")
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenMalformed("JWT is not well formed: it must have three segments.")
        try:
            header = json.loads(b64url_decode(parts[0]))
            payload = json.loads(b64url_decode(parts[1]))
        except (ValueError, UnicodeDecodeError) as exc:
            raise TokenMalformed(
                "JWT is not well formed: a segment is not base64url JSON."
            ) from exc
        if not isinstance(header, dict) or not isinstance(payload, dict):
            raise TokenMalformed("JWT is not well formed: header and payload must be objects.")
        if not isinstance(header.get("alg"), str):
            raise TokenMalformed("JWT is not well formed: the header has no 'alg'.")
        if header.get("alg") != self.settings.algorithm:
            # Includes "none": an unsigned token is a signature failure, not a shape problem.
            raise TokenBadSignature(f"Signature algorithm {header.get('alg')!r} is not accepted.")
        try:
            signature = b64url_decode(parts[2])
        except ValueError as exc:
            raise TokenBadSignature("Signature validation failed: no signature.") from exc
        if not self._signature_ok(f"{parts[0]}.{parts[1]}".encode("ascii"), signature):
            raise TokenBadSignature("Signature validation failed.")
        exp, nbf, iat = (
            payload.get("exp"),
            payload.get("nbf", payload.get("iat")),
            payload.get("iat"),
        )
        tid, appid = payload.get("tid"), payload.get("appid")
        if not all(_is_number(v) for v in (exp, nbf, iat)) or not (
            isinstance(tid, str) and isinstance(appid, str)
        ):
            raise TokenMalformed("JWT is missing exp/nbf/iat/tid/appid claims.")
        assert isinstance(exp, int | float) and isinstance(nbf, int | float)
        assert isinstance(iat, int | float)
        unix_now = self.settings.epoch + now
        if unix_now >= exp + self.settings.leeway:
            raise TokenExpired("Lifetime validation failed, the token is expired.")
        if unix_now < nbf - self.settings.leeway:
            raise TokenNotYetValid("Lifetime validation failed, the token is not yet valid.")
        if payload.get("aud") != self.settings.audience:
            raise TokenWrongAudience("Access token validation failure. Invalid audience.")
        if payload.get("iss") != self.settings.issuer_template.format(tenant=tid):
            raise TokenWrongIssuer("Access token validation failure. Invalid issuer.")
        roles = payload.get("roles", [])
        scp = payload.get("scp")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise TokenMalformed("The roles claim must be a list of strings.")
        if scp is not None and not isinstance(scp, str):
            raise TokenMalformed("The scp claim must be a string.")
        oid = payload.get("oid", "")
        upn = payload.get("upn")
        return AccessClaims(
            tenant_id=tid,
            app_id=appid,
            object_id=oid if isinstance(oid, str) else "",
            roles=frozenset(roles),
            scopes=frozenset(scp.split()) if scp is not None else frozenset(),
            delegated=scp is not None,
            upn=upn if isinstance(upn, str) else None,
            issued_at=float(iat),
            expires_at=float(exp),
            claims=payload,
        )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _missing_parameter(name: str) -> OAuthError:
    return OAuthError(
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )
