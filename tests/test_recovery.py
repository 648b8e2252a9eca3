"""Connection-state recovery on one node: a client that comes back within the window with its
session and last offset gets its rooms and every missed message, in order, exactly once; in
every other case it gets a fresh session (``recovered: false``) and nothing else.

Plain WebSocket clients resume with ``/ws?session=&offset=``; Socket.IO clients with the CONNECT
``auth`` ``{pid, offset}`` that socket.io-client (>= 4.6) sends by itself (a raw Engine.IO client
here; the stock JavaScript client in ``test_recovery_js.py``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from conftest import WAIT, make_token, uid
from delivery import join

pytestmark = pytest.mark.timeout(60)


async def room_text(sender: Any, room: str, text: str) -> str:
    ack = await sender.call("room_message", {"room": room, "text": text})
    assert ack["ok"] is True, ack
    return ack["message_id"]


async def ws_resume(clients: Any, gateway: Any, token: str, session: str, offset: str | None) -> Any:
    """``/ws?token=T&session=S&offset=O``."""
    query = f"&session={session}" + (f"&offset={offset}" if offset else "")
    return await clients.ws(gateway.ws_url, token + query)


def welcome(client: Any) -> dict[str, Any]:
    return client.inbox.of_type("welcome")[0]["content"]


async def test_ws_resume_restores_rooms_and_replays_missed_in_order(gateway, clients):
    user, room = uid("user"), uid("room")
    sender = await clients.sio(gateway.url, make_token(uid()))
    await join(sender, room)
    first = await clients.ws(gateway.ws_url, make_token(user))
    assert welcome(first)["recovered"] is False and welcome(first)["session"]
    await join(first, room)
    seen = await first.inbox.next("room_message", id=await room_text(sender, room, "before"))
    await first.close()

    missed = [await room_text(sender, room, f"missed {i}") for i in range(5)]
    notice = await sender.call("user_message", {"to": user, "text": "while away"})
    second = await ws_resume(clients, gateway, make_token(user), welcome(first)["session"], seen["offset"])
    assert welcome(second)["recovered"] is True
    assert welcome(second)["session"] == welcome(first)["session"]
    live = await room_text(sender, room, "live")
    await second.inbox.next("room_message", id=live)

    stream = [e for e in second.inbox.received if e["type"] in ("room_message", "user_message")]
    assert [e["id"] for e in stream] == [*missed, notice["message_id"], live]
    offsets = [e["offset"] for e in stream]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets) and offsets[0] > seen["offset"]
    # the room is back without a join_room: it may speak in it
    await second.send({"type": "room_message", "content": {"room": room, "text": "back"}, "id": "m"})
    assert (await second.inbox.next("ack"))["content"]["ok"] is True


async def test_ws_resume_without_offset_replays_since_session_start(gateway, clients):
    user, room = uid("user"), uid("room")
    sender = await clients.sio(gateway.url, make_token(uid()))
    await join(sender, room)
    first = await clients.ws(gateway.ws_url, make_token(user))
    await join(first, room)
    await first.close()
    missed = await room_text(sender, room, "nothing received yet")
    second = await ws_resume(clients, gateway, make_token(user), welcome(first)["session"], None)
    assert welcome(second)["recovered"] is True
    assert (await second.inbox.next("room_message"))["id"] == missed


async def test_ws_resume_takes_over_a_connection_the_server_still_holds(gateway, clients):
    """A client whose network vanished (no close) comes back before the heartbeat noticed."""
    user, room = uid("user"), uid("room")
    sender = await clients.sio(gateway.url, make_token(uid()))
    await join(sender, room)
    first = await clients.ws(gateway.ws_url, make_token(user))
    await join(first, room)
    seen = await first.inbox.next("room_message", id=await room_text(sender, room, "seen"))
    second = await ws_resume(clients, gateway, make_token(user), welcome(first)["session"], seen["offset"])
    assert welcome(second)["recovered"] is True
    await asyncio.wait_for(first.closed.wait(), WAIT)  # the old connection was closed by the server
    live = await room_text(sender, room, "after takeover")
    assert (await second.inbox.next("room_message"))["id"] == live
    assert await second.inbox.quiet("room_message") == []


@pytest.mark.parametrize("case", ["other-user", "forged-session", "forged-offset", "future-offset"])
async def test_ws_resume_refused_gives_a_fresh_session_and_nothing_else(gateway, clients, case):
    user, room = uid("user"), uid("room")
    sender = await clients.sio(gateway.url, make_token(uid()))
    await join(sender, room)
    first = await clients.ws(gateway.ws_url, make_token(user))
    await join(first, room)
    seen = await first.inbox.next("room_message", id=await room_text(sender, room, "seen"))
    await first.close()
    await room_text(sender, room, "missed")
    session, offset, token = welcome(first)["session"], seen["offset"], make_token(user)
    epoch, _, seq = offset.partition("-")
    if case == "other-user":
        token = make_token(uid())
    elif case == "forged-session":
        session = session[:-2] + ("AA" if session[-2:] != "AA" else "BB")
    elif case == "forged-offset":
        offset = f"{'0' * len(epoch) if epoch != '0' * len(epoch) else '1' * len(epoch)}-{seq}"
    else:
        offset = f"{epoch}-{'f' * len(seq)}"
    second = await ws_resume(clients, gateway, token, session, offset)
    assert welcome(second)["recovered"] is False
    assert welcome(second)["session"] != welcome(first)["session"]
    assert await second.inbox.quiet("room_message") == []
    assert not second.inbox.of_type("error")
    await second.send({"type": "room_message", "content": {"room": room, "text": "x"}, "id": "m"})
    assert (await second.inbox.next("ack"))["content"]["error"]["code"] == 403  # not restored
    if case == "other-user":  # the real owner can still resume: a failed attempt took nothing
        third = await ws_resume(clients, gateway, make_token(user), welcome(first)["session"], seen["offset"])
        assert welcome(third)["recovered"] is True
        assert (await third.inbox.next("room_message"))["content"]["text"] == "missed"


async def test_ws_resume_after_the_window_is_refused(gateway_factory, clients):
    node = gateway_factory(env={"RECOVERY_WINDOW": "1"})
    user, room = uid("user"), uid("room")
    first = await clients.ws(node.ws_url, make_token(user))
    await join(first, room)
    await first.close()
    await asyncio.sleep(1.5)  # the window is the thing under test: let it pass
    second = await ws_resume(clients, node, make_token(user), welcome(first)["session"], None)
    assert welcome(second)["recovered"] is False


async def test_ws_resume_after_a_restart_is_refused(gateway_factory, clients):
    node = gateway_factory()
    user = uid("user")
    first = await clients.ws(node.ws_url, make_token(user))
    await first.close()
    node.kill()
    node.start()
    second = await ws_resume(clients, node, make_token(user), welcome(first)["session"], None)
    assert welcome(second)["recovered"] is False


async def test_recovery_off_sends_no_offsets_or_sessions(gateway_factory, clients):
    node = gateway_factory(env={"RECOVERY_WINDOW": "0"})
    room = uid("room")
    receiver = await clients.ws(node.ws_url, make_token(uid()))
    assert "session" not in welcome(receiver) and "recovered" not in welcome(receiver)
    await join(receiver, room)
    sender = await clients.sio(node.url, make_token(uid()))
    await join(sender, room)
    message = await receiver.inbox.next("room_message", id=await room_text(sender, room, "x"))
    assert "offset" not in message


class RawSocketIO:
    """Socket.IO at the frame level, to see the CONNECT answer and each event's arguments."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.connect_answer: dict[str, Any] = {}
        self.events: list[list[Any]] = []

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, base: str, auth: dict[str, Any]) -> RawSocketIO:
        ws = await session.ws_connect(f"{base}/socket.io/?EIO=4&transport=websocket")
        client = cls(ws)
        assert (await client._text()).startswith("0{")
        await ws.send_str("40" + json.dumps(auth))
        answer = await client._text()
        assert answer.startswith("40{"), answer
        client.connect_answer = json.loads(answer[2:])
        return client

    async def _text(self) -> str:
        while True:
            msg = await self.ws.receive(timeout=WAIT)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            if msg.data == "2":
                await self.ws.send_str("3")
                continue
            return msg.data

    async def event(self, name: str) -> list[Any]:
        """The next event ``name``: its arguments (the offset last, when there is one)."""
        while True:
            text = await self._text()
            if text.startswith("42"):
                event, *args = json.loads(text[2:])
                self.events.append([event, *args])
                if event == name:
                    return args


async def test_socketio_resume_with_pid_and_offset(gateway, clients):
    user, room = uid("user"), uid("room")
    sender = await clients.sio(gateway.url, make_token(uid()))
    await join(sender, room)
    async with aiohttp.ClientSession() as http:
        first = await RawSocketIO.open(http, gateway.url, {"token": make_token(user)})
        pid = first.connect_answer["pid"]
        (hello,) = await first.event("welcome")  # a direct reply: no offset
        assert hello["content"]["recovered"] is False and hello["content"]["session"] == pid
        await first.ws.send_str("420" + json.dumps(["join_room", room]))
        while not (await first._text()).startswith("430[{"):  # until joined (events may come first)
            pass
        message_id = await room_text(sender, room, "seen")
        envelope, offset = await first.event("room_message")
        assert envelope["id"] == message_id and isinstance(offset, str)
        await first.ws.close()

        missed = [await room_text(sender, room, f"missed {i}") for i in range(3)]
        second = await RawSocketIO.open(http, gateway.url, {"token": make_token(user), "pid": pid, "offset": offset})
        assert second.connect_answer["pid"] == pid  # what makes socket.io-client say recovered
        (hello,) = await second.event("welcome")
        assert hello["content"]["recovered"] is True
        replayed = [await second.event("room_message") for _ in missed]
        assert [env["id"] for env, _ in replayed] == missed
        assert [off for _, off in replayed] == sorted(off for _, off in replayed)
        await second.ws.close()

        third = await RawSocketIO.open(http, gateway.url, {"token": make_token(uid()), "pid": pid})
        assert third.connect_answer["pid"] != pid  # another user's token: a new session
        await third.ws.close()


async def test_python_socketio_client_still_works_with_offsets(gateway, clients):
    """python-socketio's client has no recovery: it sees the offset as one more argument."""
    room = uid("room")
    a = await clients.sio(gateway.url, make_token(uid()))
    b = await clients.sio(gateway.url, make_token(uid()))
    await join(a, room)
    await join(b, room)
    got: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
    a.sio.on("room_message", lambda *args: got.done() or got.set_result(args))
    message_id = await room_text(b, room, "hi")
    envelope, offset = await asyncio.wait_for(got, WAIT)
    assert envelope["id"] == message_id and isinstance(offset, str)
