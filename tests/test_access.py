"""Access control: protected rooms, the ``rooms`` claim, strict token rules, revocation input."""

from __future__ import annotations

import json
import time

import aiohttp
import jwt
import pytest
import socketio
from conftest import SECRET, make_token, uid
from realtime_gateway import Emitter

API_KEY = "access-key-0123456789"
PROTECTED = "admins,ops:*"


async def refusal(url: str, token: str) -> dict:
    """Connect with Socket.IO and return the connect_error data (the connect must fail)."""
    client = socketio.AsyncClient(reconnection=False)
    errors: list = []
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=5)
    assert errors, "connect_error was not delivered"
    return errors[0]


async def ws_refusal(ws_url: str, token: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.get(f"{ws_url}?token={token}") as response:
        return response.status, await response.json()


async def publish(url: str, body: dict) -> int:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as http, http.post(f"{url}/api/publish", json=body, headers=headers) as r:
        return r.status


@pytest.fixture
def guarded(redis_server, gateway_factory):
    """Two nodes with protected rooms and the HTTP API."""
    env = {"REDIS_URL": redis_server.url, "API_KEY": API_KEY, "PROTECTED_ROOMS": PROTECTED}
    return [gateway_factory(env=env), gateway_factory(env=env)]


# -- protected rooms ----------------------------------------------------------------------------


async def test_guest_is_refused_from_a_protected_room_and_receives_nothing_from_it(guarded, clients, redis_server):
    node1, node2 = guarded
    admin = await clients.sio(node2.url, make_token(uid(), "Admin", rooms=["admins"]))
    guest = await clients.sio(node1.url, make_token(uid(), "Guest"))
    ws_guest = await clients.ws(node1.ws_url, make_token(uid(), "Guest 2"))
    assert await admin.call("join_room", "admins") == {"ok": True, "room": "admins"}

    ack = await guest.call("join_room", "admins")
    assert ack["ok"] is False and ack["error"]["code"] == 403
    assert "protected" in ack["error"]["message"] and "rooms" in ack["error"]["message"]
    assert (await guest.call("join_room", "ops:deploys"))["error"]["code"] == 403  # a glob pattern
    await ws_guest.send({"type": "join_room", "content": "admins", "id": 1})
    ws_ack = await ws_guest.inbox.next("ack")
    assert ws_ack["content"]["ok"] is False and ws_ack["content"]["error"]["code"] == 403
    # nor can it post into the room it was refused
    posted = await guest.call("room_message", {"room": "admins", "text": "let me in"})
    assert posted["ok"] is False and posted["error"]["code"] == 403

    content = {"entity": "user", "action": "create", "id": "1", "data": {"email": "boss@example.com"}}
    assert await publish(node1.url, {"target": {"room": "admins"}, "type": "data_update", "content": content}) == 202
    async with Emitter(redis_server.url) as emitter:
        await emitter.send_data_update("user", "delete", id="2", room="admins")
    assert (await admin.inbox.next("data_update"))["content"] == content
    assert (await admin.inbox.next("data_update"))["content"]["action"] == "delete"
    assert await guest.inbox.quiet("data_update") == []
    assert await ws_guest.inbox.quiet("data_update") == []
    assert await admin.inbox.quiet("room_message") == []
    # unprotected rooms work as before for tokens without a rooms claim (the seed's front end)
    assert await guest.call("join_room", "chat:room001") == {"ok": True, "room": "chat:room001"}


async def test_rooms_claim_grants_protected_rooms_and_limits_the_others(guarded, clients):
    node1, _ = guarded
    ops = await clients.sio(node1.url, make_token(uid(), rooms=["ops:*", "chat:*"]))
    assert (await ops.call("join_room", "ops:deploys"))["ok"] is True
    assert (await ops.call("join_room", "chat:room001"))["ok"] is True
    for room in ("admins", "lobby"):  # protected, and unprotected but not in the claim
        ack = await ops.call("join_room", room)
        assert ack["ok"] is False and ack["error"]["code"] == 403
        assert "rooms claim" in ack["error"]["message"]
    nothing = await clients.sio(node1.url, make_token(uid(), rooms=[]))
    assert (await nothing.call("join_room", "lobby"))["error"]["code"] == 403


@pytest.mark.parametrize(
    "rooms",
    ["admins", [1], [""], ["x" * 129], [f"r{i}" for i in range(101)], {"admins": True}],
    ids=["string", "number", "empty-name", "too-long", "too-many", "object"],
)
async def test_malformed_rooms_claim_is_401(gateway, rooms):
    error = await refusal(gateway.url, make_token(uid(), rooms=rooms))
    assert error["code"] == 401 and "rooms" in error["message"]


# -- strict tokens ------------------------------------------------------------------------------


async def test_token_without_exp_is_refused(gateway):
    token = jwt.encode({"user_id": uid()}, SECRET, algorithm="HS256")
    error = await refusal(gateway.url, token)
    assert error["code"] == 401 and "exp" in error["message"]
    status, body = await ws_refusal(gateway.ws_url, token)
    assert status == 401 and "exp" in body["error"]["message"]


async def test_leeway_accepts_a_token_just_past_exp_and_closes_it_when_the_leeway_ends(gateway, clients):
    late = await clients.sio(gateway.url, make_token(uid(), ttl=-2))  # default --jwt-leeway 5
    assert (await late.call("ping"))["ok"] is True  # not closed the moment it connected
    assert (await late.inbox.next("error", timeout=6))["content"] == {"code": 401, "message": "token expired"}
    assert "expired" in (await refusal(gateway.url, make_token(uid(), ttl=-10)))["message"]


AUDIENCE, ISSUER = "realtime", "https://auth.example.com"
WRONG_AUDIENCE_OR_ISSUER = [
    ({"aud": "billing", "iss": ISSUER}, "audience"),
    ({"iss": ISSUER}, "aud"),
    ({"aud": AUDIENCE, "iss": "https://evil.example.com"}, "issuer"),
    ({"aud": AUDIENCE}, "iss"),
]


async def test_audience_and_issuer_are_enforced_when_configured(gateway_factory, clients):
    server = gateway_factory(env={"JWT_AUDIENCE": AUDIENCE, "JWT_ISSUER": ISSUER})
    good = await clients.sio(server.url, make_token(uid(), aud=AUDIENCE, iss=ISSUER))
    assert good.inbox.of_type("welcome")
    for claims, needle in WRONG_AUDIENCE_OR_ISSUER:
        error = await refusal(server.url, make_token(uid(), **claims))
        assert error["code"] == 401 and needle in error["message"], (claims, error)
        status, body = await ws_refusal(server.ws_url, make_token(uid(), **claims))
        assert status == 401 and needle in body["error"]["message"], (claims, body)


async def test_aud_and_iss_are_not_checked_when_not_configured(gateway, clients):
    await clients.sio(gateway.url, make_token(uid(), aud="anything", iss="anyone"))


async def test_hs256_and_rs256_each_verify_with_their_own_key(tmp_path, gateway_factory, clients):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(pem)
    server = gateway_factory(env={"JWT_ALGORITHMS": "HS256,RS256", "JWT_PUBLIC_KEY": str(key_file)})
    claims = {"exp": int(time.time()) + 60}
    hs = await clients.sio(server.url, make_token("hs-user"))
    rs = await clients.sio(server.url, jwt.encode({**claims, "user_id": "rs-user"}, private, algorithm="RS256"))
    assert hs.inbox.of_type("welcome")[0]["content"]["user_id"] == "hs-user"
    assert rs.inbox.of_type("welcome")[0]["content"]["user_id"] == "rs-user"
    forged = jwt.encode({**claims, "user_id": "mallory"}, other, algorithm="RS256")
    assert "bad signature" in (await refusal(server.url, forged))["message"]
    unlisted = jwt.encode({**claims, "user_id": "mallory"}, private, algorithm="RS512")
    assert "algorithm not allowed" in (await refusal(server.url, unlisted))["message"]
    wrong_secret = make_token("mallory", secret="another-secret-another-secret-another-secret")
    assert "bad signature" in (await refusal(server.url, wrong_secret))["message"]


# -- revocation input ---------------------------------------------------------------------------


BAD_EXPIRES_AT = ["true", "NaN", "Infinity", "-Infinity", '"1764274800"', "[1]", "{}"]


async def test_revoke_refuses_an_expires_at_that_is_not_a_finite_number(redis_server, gateway_factory, clients):
    server = gateway_factory(env={"REDIS_URL": redis_server.url, "API_KEY": API_KEY})
    jti = uid("jti")
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        for value in BAD_EXPIRES_AT:
            raw = f'{{"jti": {json.dumps(jti)}, "expires_at": {value}}}'
            async with http.post(f"{server.url}/api/revoke", data=raw, headers=headers) as r:
                assert r.status == 400, (value, r.status, await r.text())
                assert (await r.json())["error"]["field"] == "expires_at"
        async with http.post(f"{server.url}/api/revoke", json={"jti": 7}, headers=headers) as r:
            assert r.status == 400 and (await r.json())["error"]["field"] == "jti"
        # none of them revoked the token: it still connects
        await clients.sio(server.url, make_token(uid(), jti=jti))
        for body in ({"jti": jti, "expires_at": time.time() + 3600}, {"jti": uid("jti")}):
            async with http.post(f"{server.url}/api/revoke", json=body, headers=headers) as r:
                assert r.status == 200 and await r.json() == {"ok": True, "jti": body["jti"]}
    assert (await refusal(server.url, make_token(uid(), jti=jti)))["message"] == "token revoked"


async def test_recovered_session_keeps_only_the_rooms_the_new_token_may_join(gateway_factory, clients):
    server = gateway_factory(env={"PROTECTED_ROOMS": "admins"})
    user, lobby = uid("user"), uid("lobby")
    sender = await clients.sio(server.url, make_token(uid(), rooms=["admins", "lobby-*"]))
    assert (await sender.call("join_room", "admins"))["ok"] and (await sender.call("join_room", lobby))["ok"]
    first = await clients.ws(server.ws_url, make_token(user, rooms=["admins", "lobby-*"]))
    for room in ("admins", lobby):
        await first.send({"type": "join_room", "content": room, "id": room})
        assert (await first.inbox.next("ack"))["content"]["ok"] is True
    before = await sender.call("room_message", {"room": lobby, "text": "before"})
    seen = await first.inbox.next("room_message", id=before["message_id"])
    session = first.inbox.of_type("welcome")[0]["content"]["session"]
    await first.close()

    secret = await sender.call("room_message", {"room": "admins", "text": "admins only"})
    missed = await sender.call("room_message", {"room": lobby, "text": "missed"})
    # the device comes back with a token that no longer grants admins
    query = f"&session={session}&offset={seen['offset']}"
    second = await clients.ws(server.ws_url, make_token(user) + query)
    assert second.inbox.of_type("welcome")[0]["content"]["recovered"] is True
    assert (await second.inbox.next("room_message", id=missed["message_id"]))["room"] == lobby
    live = await sender.call("room_message", {"room": "admins", "text": "still admins only"})
    await sender.inbox.next("room_message", id=live["message_id"])
    received = {e["id"] for e in await second.inbox.quiet("room_message")} | {missed["message_id"]}
    assert secret["message_id"] not in received and live["message_id"] not in received
    await second.send({"type": "room_message", "content": {"room": "admins", "text": "x"}, "id": "post"})
    assert (await second.inbox.next("ack"))["content"]["error"]["code"] == 403
