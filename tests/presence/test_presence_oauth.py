"""TokenAuthority: the token endpoint's grants and errors, and JWT signing and verification."""

from __future__ import annotations

import json
import random

import pytest

from sbcsim.presence.model import DEFAULT_EPOCH
from sbcsim.presence.oauth import (
    AuthoritySettings,
    OAuthError,
    TokenAuthority,
    TokenBadSignature,
    TokenExpired,
    TokenMalformed,
    TokenMissing,
    TokenNotYetValid,
    TokenWrongAudience,
    TokenWrongIssuer,
    b64url_decode,
    b64url_encode,
)

TENANT_A = "aaaaaaaa-0000-4000-8000-000000000001"
TENANT_B = "bbbbbbbb-0000-4000-8000-000000000002"
CCAAS = "c0c0c0c0-0000-4000-8000-00000000000c"
AGENT_APP = "d0d0d0d0-0000-4000-8000-00000000000d"
ALICE = "11111111-1111-4111-8111-111111111111"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"


def authority(seed: int = 7, **settings: object) -> TokenAuthority:
    auth = TokenAuthority(AuthoritySettings(**settings), rng=random.Random(seed))  # type: ignore[arg-type]
    auth.add_tenant(TENANT_A, "contoso.onmicrosoft.com")
    auth.add_tenant(TENANT_B)
    auth.add_app(TENANT_A, CCAAS, "s3cret", roles=["Presence.Read.All", "Presence.ReadWrite.All"])
    auth.add_app(
        TENANT_A,
        AGENT_APP,
        public_client=True,
        delegated_scopes=["Presence.Read", "Presence.Read.All"],
    )
    auth.add_user_account(TENANT_A, "alice@contoso.example", "pa55", ALICE)
    return auth


def claims_of(token: str) -> dict[str, object]:
    payload = json.loads(b64url_decode(token.split(".")[1]))
    assert isinstance(payload, dict)
    return payload


def client_credentials(secret: str = "s3cret", scope: str = GRAPH_DEFAULT) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": CCAAS,
        "client_secret": secret,
        "scope": scope,
    }


def test_client_credentials_token_has_graph_claims() -> None:
    auth = authority()
    response = auth.token_request(TENANT_A, client_credentials(), 12.5)
    body = response.as_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600 and body["ext_expires_in"] == 3600
    assert "scope" not in body
    claims = claims_of(response.access_token)
    issued = int(DEFAULT_EPOCH) + 12
    assert {k: v for k, v in claims.items() if k != "uti"} == {
        "aud": "https://graph.microsoft.com",
        "iss": f"https://sts.windows.net/{TENANT_A}/",
        "iat": issued,
        "nbf": issued,
        "exp": issued + 3600,
        "app_displayname": CCAAS,
        "appid": CCAAS,
        "tid": TENANT_A,
        "ver": "1.0",
        "idtyp": "app",
        "oid": CCAAS,
        "sub": CCAAS,
        "roles": ["Presence.Read.All", "Presence.ReadWrite.All"],
    }
    verified = auth.verify(response.access_token, 12.5)
    assert verified.tenant_id == TENANT_A
    assert verified.app_id == CCAAS
    assert verified.delegated is False
    assert verified.permissions == frozenset({"Presence.Read.All", "Presence.ReadWrite.All"})
    assert verified.expires_at == issued + 3600


def test_tokens_are_reproducible_for_a_seed() -> None:
    first = authority(seed=1).token_request(TENANT_A, client_credentials(), 0.0).access_token
    again = authority(seed=1).token_request(TENANT_A, client_credentials(), 0.0).access_token
    other = authority(seed=2).token_request(TENANT_A, client_credentials(), 0.0).access_token
    assert first == again
    assert first != other


def test_tenant_may_be_named_by_domain_and_secret_by_basic_auth() -> None:
    auth = authority()
    form = {"grant_type": "client_credentials", "scope": GRAPH_DEFAULT}
    response = auth.token_request(
        "CONTOSO.onmicrosoft.com", form, 0.0, basic_auth=(CCAAS, "s3cret")
    )
    assert claims_of(response.access_token)["tid"] == TENANT_A


@pytest.mark.parametrize(
    ("tenant", "form", "error", "code", "status"),
    [
        ("nowhere.example", client_credentials(), "invalid_request", 90002, 400),
        (TENANT_A, {**client_credentials(), "grant_type": ""}, "invalid_request", 900144, 400),
        (TENANT_A, {**client_credentials(), "client_id": ""}, "invalid_request", 900144, 400),
        (TENANT_A, client_credentials(secret="wrong"), "invalid_client", 7000215, 401),
        (TENANT_A, client_credentials(secret=""), "invalid_client", 7000218, 401),
        (TENANT_B, client_credentials(), "unauthorized_client", 700016, 400),
        (TENANT_A, client_credentials(scope="Presence.Read.All"), "invalid_scope", 1002012, 400),
        (TENANT_A, client_credentials(scope=""), "invalid_request", 900144, 400),
        (
            TENANT_A,
            {**client_credentials(), "grant_type": "implicit"},
            "unsupported_grant_type",
            70003,
            400,
        ),
    ],
)
def test_token_request_errors(
    tenant: str, form: dict[str, str], error: str, code: int, status: int
) -> None:
    with pytest.raises(OAuthError) as caught:
        authority().token_request(tenant, form, 0.0)
    assert (caught.value.error, caught.value.code, caught.value.status) == (error, code, status)
    assert caught.value.description.startswith(f"AADSTS{code}: ")


def test_password_grant_gives_delegated_scopes() -> None:
    auth = authority()
    form = {
        "grant_type": "password",
        "client_id": AGENT_APP,
        "username": "ALICE@contoso.example",
        "password": "pa55",
        "scope": "https://graph.microsoft.com/Presence.Read openid offline_access",
    }
    response = auth.token_request(TENANT_A, form, 0.0)
    assert response.scope == "https://graph.microsoft.com/Presence.Read"
    claims = claims_of(response.access_token)
    assert (claims["scp"], claims["oid"], claims["upn"], claims["idtyp"]) == (
        "Presence.Read",
        ALICE,
        "alice@contoso.example",
        "user",
    )
    assert "roles" not in claims
    verified = auth.verify(response.access_token, 0.0)
    assert verified.delegated and verified.scopes == frozenset({"Presence.Read"})
    assert verified.object_id == ALICE and verified.upn == "alice@contoso.example"

    everything = auth.token_request(TENANT_A, {**form, "scope": GRAPH_DEFAULT}, 0.0)
    assert claims_of(everything.access_token)["scp"] == "Presence.Read Presence.Read.All"


@pytest.mark.parametrize(
    ("changes", "error", "code"),
    [
        ({"password": "nope"}, "invalid_grant", 50126),
        ({"username": "mallory@contoso.example"}, "invalid_grant", 50126),
        ({"scope": "Presence.ReadWrite.All"}, "invalid_grant", 65001),
        ({"scope": "api://other/.default"}, "invalid_scope", 70011),
        ({"scope": "openid"}, "invalid_request", 900144),
        ({"password": ""}, "invalid_request", 900144),
    ],
)
def test_password_grant_errors(changes: dict[str, str], error: str, code: int) -> None:
    form = {
        "grant_type": "password",
        "client_id": AGENT_APP,
        "username": "alice@contoso.example",
        "password": "pa55",
        "scope": "Presence.Read",
        **changes,
    }
    with pytest.raises(OAuthError) as caught:
        authority().token_request(TENANT_A, form, 0.0)
    assert (caught.value.error, caught.value.code) == (error, code)


def test_expiry_is_exact_on_the_virtual_clock() -> None:
    auth = authority()
    token = auth.token_request(TENANT_A, client_credentials(), 0.0).access_token
    assert auth.verify(token, 3599.999).app_id == CCAAS
    with pytest.raises(TokenExpired):
        auth.verify(token, 3600.0)
    lenient = authority(leeway=300.0)
    token = lenient.token_request(TENANT_A, client_credentials(), 0.0).access_token
    assert lenient.verify(token, 3899.0).app_id == CCAAS


def test_verify_rejects_missing_and_malformed_tokens() -> None:
    auth = authority()
    with pytest.raises(TokenMissing):
        auth.verify(None, 0.0)
    with pytest.raises(TokenMissing):
        auth.verify("", 0.0)
    for bad in ("abc", "a.b", "a.b.c.d", "!!.??.xx", "e30.e30.", b64url_encode(b"[]") + ".e30.AA"):
        with pytest.raises(TokenMalformed):
            auth.verify(bad, 0.0)
    # Well-signed but without the claims a Graph token must carry.
    with pytest.raises(TokenMalformed):
        auth.verify(auth.sign({"aud": "https://graph.microsoft.com"}), 0.0)


def test_tampering_is_detected() -> None:
    auth = authority()
    token = auth.token_request(TENANT_A, client_credentials(), 0.0).access_token
    header, payload, signature = token.split(".")
    claims = claims_of(token)
    claims["tid"] = TENANT_B
    forged = b64url_encode(json.dumps(claims).encode())
    with pytest.raises(TokenBadSignature):
        auth.verify(f"{header}.{forged}.{signature}", 0.0)
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    with pytest.raises(TokenBadSignature):
        auth.verify(f"{header}.{payload}.{flipped}", 0.0)
    none_header = b64url_encode(b'{"alg":"none","typ":"JWT"}')
    with pytest.raises(TokenBadSignature):
        auth.verify(f"{none_header}.{payload}.", 0.0)
    with pytest.raises(TokenBadSignature):
        authority(seed=99).verify(token, 0.0)  # another authority's key


def test_audience_issuer_and_not_before() -> None:
    auth = authority()
    base = claims_of(auth.token_request(TENANT_A, client_credentials(), 0.0).access_token)
    with pytest.raises(TokenWrongAudience):
        auth.verify(auth.sign({**base, "aud": "api://someone-else"}), 0.0)
    with pytest.raises(TokenWrongIssuer):
        auth.verify(auth.sign({**base, "iss": f"https://sts.windows.net/{TENANT_B}/"}), 0.0)
    with pytest.raises(TokenNotYetValid):
        auth.verify(auth.sign({**base, "nbf": int(DEFAULT_EPOCH) + 60}), 59.0)


def test_es256_signing() -> None:
    auth = authority(algorithm="ES256")
    token = auth.token_request(TENANT_A, client_credentials(), 0.0).access_token
    header = json.loads(b64url_decode(token.split(".")[0]))
    assert header == {"typ": "JWT", "alg": "ES256", "kid": "sbcsim-lab-key-1"}
    assert len(b64url_decode(token.split(".")[2])) == 64
    assert auth.verify(token, 0.0).roles == frozenset(
        {"Presence.Read.All", "Presence.ReadWrite.All"}
    )
    same = authority(algorithm="ES256").token_request(TENANT_A, client_credentials(), 0.0)
    assert same.access_token == token  # deterministic key and signature for a seed
    h, p, s = token.split(".")
    flipped = s[:-2] + ("AA" if s[-2:] != "AA" else "BB")
    with pytest.raises(TokenBadSignature):
        auth.verify(f"{h}.{p}.{flipped}", 0.0)
    with pytest.raises(TokenBadSignature):
        authority().verify(token, 0.0)  # an HS256 authority refuses ES256 tokens


def test_registration_rules() -> None:
    auth = TokenAuthority(rng=random.Random(0))
    with pytest.raises(ValueError, match="unknown tenant"):
        auth.add_app(TENANT_A, CCAAS, "x")
    auth.add_tenant(TENANT_A)
    with pytest.raises(ValueError, match="needs a secret"):
        auth.add_app(TENANT_A, CCAAS)
    with pytest.raises(ValueError, match="32 bytes"):
        TokenAuthority(key=b"short")
    assert auth.tenants() == (TENANT_A,)


def test_b64url_round_trip() -> None:
    for data in (b"", b"\x00", b"\xff\xfe", bytes(range(256))):
        encoded = b64url_encode(data)
        assert "=" not in encoded
        if data:
            assert b64url_decode(encoded) == data
    with pytest.raises(ValueError):
        b64url_decode("a")
