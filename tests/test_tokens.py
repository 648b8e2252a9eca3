"""Token verification (realtime_gateway.auth.TokenVerifier): the gateway checks the compact JWS
and the registered claims itself (PyJWT's ``jwt.decode`` costs about 100 µs per connection).
Every verdict is compared with PyJWT's own for the same token and options, so the fast path
accepts exactly what PyJWT accepts; the few deliberate differences are tested on their own.
"""

from __future__ import annotations

import base64
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from realtime_gateway.auth import AuthError, TokenVerifier

SECRET = "a-test-secret-that-is-long-enough-for-hs512-0123456789abcdef-0123456789"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def pem(private_key: object) -> str:
    return (
        private_key.public_key()  # type: ignore[attr-defined]
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


RSA_PUBLIC, EC_PUBLIC = pem(RSA_KEY), pem(EC_KEY)
ALGORITHMS = ["HS256", "HS384", "HS512", "RS256", "ES256"]
KEYS = {"HS256": SECRET, "HS384": SECRET, "HS512": SECRET, "RS256": RSA_KEY, "ES256": EC_KEY}


def verifiers(**options: object) -> tuple[TokenVerifier, object]:
    """Ours, and a function giving PyJWT's verdict with the same configuration."""
    ours = TokenVerifier(ALGORITHMS[:-1], secret=SECRET, public_key=RSA_PUBLIC, **options)  # type: ignore[arg-type]
    ec_ours = TokenVerifier(["ES256"], public_key=EC_PUBLIC, **options)  # type: ignore[arg-type]
    audience, issuer = options.get("audience"), options.get("issuer")

    def pyjwt(token: str, algorithm: str) -> bool:
        key = {"RS256": RSA_PUBLIC, "ES256": EC_PUBLIC}.get(algorithm, SECRET)
        try:
            jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer,
                leeway=options.get("leeway", 0),
                options={
                    "require": ["exp", *(["aud"] if audience else []), *(["iss"] if issuer else [])],
                    "verify_aud": audience is not None,
                },
            )
        except jwt.PyJWTError:
            return False
        return True

    def verdict(token: str, algorithm: str) -> tuple[bool, bool]:
        verifier = ec_ours if algorithm == "ES256" else ours
        try:
            verifier.verify(token)
            accepted = True
        except AuthError:
            accepted = False
        return accepted, pyjwt(token, algorithm)

    return ours, verdict


def claim_cases() -> dict[str, dict[str, object]]:
    """Claims relative to now: built when a test runs, not when the module is collected (the
    suite runs for minutes)."""
    now = int(time.time())
    return {
        "valid": {"user_id": "u1", "exp": now + 60},
        "numeric user_id": {"user_id": 7, "exp": now + 60},
        "sub": {"sub": "u1", "exp": now + 60},
        "float exp": {"user_id": "u1", "exp": now + 60.5},
        "expired": {"user_id": "u1", "exp": now - 60},
        "expired within the leeway": {"user_id": "u1", "exp": now - 2},
        "no exp": {"user_id": "u1"},
        "nbf in the future": {"user_id": "u1", "exp": now + 60, "nbf": now + 30},
        "nbf within the leeway": {"user_id": "u1", "exp": now + 60, "nbf": now + 2},
        "nbf past": {"user_id": "u1", "exp": now + 60, "nbf": now - 30},
        "string nbf": {"user_id": "u1", "exp": now + 60, "nbf": "soon"},
        "iat in the future": {"user_id": "u1", "exp": now + 60, "iat": now + 30},
        "iat past": {"user_id": "u1", "exp": now + 60, "iat": now - 30},
        "string iat": {"user_id": "u1", "exp": now + 60, "iat": "then"},
        "numeric sub": {"user_id": "u1", "sub": 5, "exp": now + 60},
        "numeric jti": {"user_id": "u1", "jti": 5, "exp": now + 60},
        "string jti": {"user_id": "u1", "jti": "j-1", "exp": now + 60},
        "aud string": {"user_id": "u1", "exp": now + 60, "aud": "gateway"},
        "aud list": {"user_id": "u1", "exp": now + 60, "aud": ["other", "gateway"]},
        "aud wrong": {"user_id": "u1", "exp": now + 60, "aud": "other"},
        "aud not a string": {"user_id": "u1", "exp": now + 60, "aud": 5},
        "iss right": {"user_id": "u1", "exp": now + 60, "iss": "https://issuer"},
        "iss wrong": {"user_id": "u1", "exp": now + 60, "iss": "https://elsewhere"},
        "aud and iss": {"user_id": "u1", "exp": now + 60, "aud": "gateway", "iss": "https://issuer"},
    }


CONFIGURATIONS = {
    "plain": {"leeway": 5},
    "audience": {"leeway": 5, "audience": "gateway"},
    "issuer": {"leeway": 5, "issuer": "https://issuer"},
}


@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_claims_get_the_verdict_pyjwt_gives(configuration, algorithm):
    """Every claim case, every algorithm, three configurations: accepted exactly when PyJWT
    accepts it (where PyJWT refuses, so do we, and the other way round)."""
    _, verdict = verifiers(**CONFIGURATIONS[configuration])
    differ = {}
    for case, claims in claim_cases().items():
        token = jwt.encode(claims, KEYS[algorithm], algorithm=algorithm)
        ours, theirs = verdict(token, algorithm)
        if ours != theirs:
            differ[case] = {"ours": ours, "pyjwt": theirs}
    assert differ == {}
    assert verdict(jwt.encode(claim_cases()["valid"], KEYS[algorithm], algorithm=algorithm), algorithm) == (
        configuration == "plain",
        configuration == "plain",
    )


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_time_claims_must_be_json_numbers(claim):
    """Deliberately stricter than PyJWT, which also takes a string of digits: RFC 7519 says a
    NumericDate is a JSON number, and a string there is more likely a bug than a date."""
    verifier, _ = verifiers()
    now = int(time.time())
    claims = {"user_id": "u1", "exp": now + 60, claim: str(now - 10 if claim != "exp" else now + 60)}
    with pytest.raises(AuthError, match=f"the '{claim}' claim must be a number"):
        verifier.verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def tampered(token: str, part: int, value: str) -> str:
    parts = token.split(".")
    parts[part] = value
    return ".".join(parts)


def hs256_signed_with(key: bytes) -> str:
    """An HS256 token signed by hand (PyJWT refuses to sign with a PEM key)."""
    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claim_cases()["valid"]).encode())
    return signing_input + "." + b64(hmac.digest(key, signing_input.encode(), "sha256"))


def forgeries() -> dict[str, str]:
    """Tokens that must be refused, each built now around a token that is otherwise valid."""
    valid_claims = claim_cases()["valid"]
    valid = jwt.encode(valid_claims, SECRET, algorithm="HS256")
    return {
        "payload swapped": tampered(valid, 1, b64(json.dumps({**valid_claims, "user_id": "admin"}).encode())),
        "signature of another secret": jwt.encode(valid_claims, SECRET + "x", algorithm="HS256"),
        "signature cut": valid[:-4],
        "no signature": tampered(valid, 2, ""),
        "alg none": jwt.encode(valid_claims, None, algorithm="none"),
        "alg NONE in the header": tampered(valid, 0, b64(b'{"alg":"NONE","typ":"JWT"}')),
        "alg not configured": jwt.encode(valid_claims, SECRET, algorithm="HS384"),
        "HS256 signed with the public key": hs256_signed_with(RSA_PUBLIC.encode()),
        "RS256 with an HMAC signature": tampered(valid, 0, b64(b'{"alg":"RS256","typ":"JWT"}')),
        "two parts": ".".join(valid.split(".")[:2]),
        "four parts": valid + ".x",
        "header not JSON": tampered(valid, 0, b64(b"not json")),
        "header a list": tampered(valid, 0, b64(b'["HS256"]')),
        "payload not JSON": jwt.api_jws.encode(b"not json", SECRET, algorithm="HS256"),
        "payload a list": jwt.api_jws.encode(b"[1,2]", SECRET, algorithm="HS256"),
        "payload not UTF-8": jwt.api_jws.encode(b"\xff\xfe", SECRET, algorithm="HS256"),
        "padding in a segment": tampered(valid, 1, valid.split(".")[1] + "=="),
        "characters outside base64url": tampered(valid, 2, valid.split(".")[2][:-2] + "+/"),
        "critical header": jwt.encode(valid_claims, SECRET, algorithm="HS256", headers={"crit": ["exp"]}),
        "garbage": "not-a-token",
    }


@pytest.mark.parametrize("case", list(forgeries()))
def test_forged_and_malformed_tokens_are_refused_with_a_reason(case):
    verifier = TokenVerifier(["HS256", "RS256"], secret=SECRET, public_key=RSA_PUBLIC)
    with pytest.raises(AuthError) as refused:
        verifier.verify(forgeries()[case])
    assert refused.value.message.startswith("invalid token")  # for what is wrong, not for its age


def test_the_identity_comes_from_the_verified_claims():
    verifier = TokenVerifier(["HS256"], secret=SECRET)
    exp = int(time.time()) + 60
    claims = {"user_id": 42, "username": "Alice", "exp": exp, "jti": "t-1", "rooms": ["chat:*"]}
    identity = verifier.verify(jwt.encode(claims, SECRET, algorithm="HS256"))
    assert (identity.user_id, identity.username, identity.expires_at) == ("42", "Alice", exp)
    assert (identity.token_id, identity.rooms) == ("t-1", ("chat:*",))
    assert verifier.verify(jwt.encode({"sub": "s-1", "exp": exp}, SECRET, algorithm="HS256")).username == "s-1"


def test_keys_that_cannot_verify_their_algorithm_are_refused_at_start():
    """PyJWT's guard against algorithm confusion (a PEM key as an HMAC secret) still applies,
    checked once, when the verifier is built; so is a public key of the wrong family."""
    with pytest.raises(ValueError, match="HS256"):
        TokenVerifier(["HS256"], secret=RSA_PUBLIC)
    with pytest.raises(ValueError, match="ES256"):
        TokenVerifier(["ES256"], public_key=RSA_PUBLIC)
