"""The "before" row of the benchmarks: a plain python-socketio AsyncServer on aiohttp with every
default left alone (stdlib json, default event loop, permessage-deflate as aiohttp negotiates it),
speaking the gateway's protocol: JWT auth, the envelope, join_room / room_message / ping.

    JWT_SECRET=s python bench/vanilla_server.py --port 9001 [--redis-url redis://127.0.0.1:6380/0]

REDIS_URL (or --redis-url) clusters nodes with python-socketio's AsyncRedisManager.
"""

import argparse
import os
import time
import uuid

import jwt
import socketio
from aiohttp import web


def envelope(type_, content, **extra):
    return {"type": type_, "content": content, "timestamp": int(time.time()), "id": uuid.uuid4().hex, **extra}


def build_app(secret, redis_url=None):
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*", client_manager=manager)
    app = web.Application()
    sio.attach(app)

    async def healthz(_request):
        return web.json_response({"status": "ok"})

    app.router.add_get("/healthz", healthz)

    # Presence as the gateway announces it: user_status to everyone on a user's first connection
    # and after their last one closes (counted per node, as the bench puts each user on one).
    connections_of = {}

    async def presence(user, delta):
        n = connections_of.get(user["id"], 0) + delta
        if n > 0:
            connections_of[user["id"]] = n
        else:
            connections_of.pop(user["id"], None)
        if n == (1 if delta > 0 else 0):
            await sio.emit(
                "user_status",
                envelope(
                    "user_status",
                    {"user_id": user["id"], "user_name": user["name"], "status": "online" if n else "offline"},
                ),
            )

    @sio.event
    async def connect(sid, _environ, auth):
        try:
            claims = jwt.decode((auth or {}).get("token", ""), secret, algorithms=["HS256"])
        except jwt.PyJWTError as exc:
            raise socketio.exceptions.ConnectionRefusedError({"code": 401, "message": str(exc)}) from None
        user_id = str(claims.get("user_id") or claims.get("sub"))
        user = {"id": user_id, "name": claims.get("username") or user_id}
        await sio.save_session(sid, user)
        await sio.enter_room(sid, f"user:{user_id}")
        await sio.emit(
            "welcome",
            envelope("welcome", {"sid": sid, "user_id": user_id, "username": user["name"], "server_time": time.time()}),
            to=sid,
        )
        await presence(user, +1)

    @sio.event
    async def disconnect(sid, *_reason):
        await presence(await sio.get_session(sid), -1)

    @sio.event
    async def join_room(sid, room):
        if not isinstance(room, str) or not 1 <= len(room) <= 128 or room.startswith("user:"):
            return {"ok": False, "error": {"code": 403, "message": "bad room"}}
        await sio.enter_room(sid, room)
        return {"ok": True, "room": room}

    @sio.event
    async def room_message(sid, content):
        room = content.get("room") if isinstance(content, dict) else None
        if room not in sio.rooms(sid):
            return {"ok": False, "error": {"code": 403, "message": "not a member"}}
        user = await sio.get_session(sid)
        sender = {"from": user["id"], "from_name": user["name"]}  # "from" is a keyword
        await sio.emit("room_message", envelope("room_message", content, room=room, **sender), room=room)
        return {"ok": True}

    @sio.event
    async def ping(sid, _content=None):
        await sio.emit("pong", envelope("pong", None), to=sid)
        return {"ok": True}

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8087")))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    args = parser.parse_args()
    secret = os.environ["JWT_SECRET"]
    web.run_app(
        build_app(secret, args.redis_url),
        host=args.host,
        port=args.port,
        print=lambda *_: print(f"vanilla python-socketio {args.host}:{args.port}", flush=True),
    )


if __name__ == "__main__":
    main()
