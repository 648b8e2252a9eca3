"""Cluster presence in Redis: per-node counts that expire with their node.

Keys (prefix ``gateway:``)::

    presence:node:<node>   hash  user_id -> connections of that user on <node>
    presence:users         hash  user_id -> connections on all nodes (only users online)
    presence:names         hash  user_id -> display name (only users online)
    presence:connections   int   connections on all nodes
    presence:rooms         hash  room -> nodes with members in it (only rooms with members)
    nodes                  set   node ids that have written presence
    node:<node>            str   this node's statistics; expires after ``ttl`` unless refreshed
    node:<node>:rooms      set   client-joined rooms with members on <node>

Every change runs as one Lua script, so the cluster-wide count and the transition it causes are
decided atomically: whichever node's write takes a user from 0 to 1 (or 1 to 0) is told so, and
it alone announces it. A node that dies without cleaning up stops refreshing ``node:<node>``;
once that key has expired, the next sweep (every node runs one) removes the node's counts in a
script, so exactly one sweeper receives the users that went offline and announces them.

Rooms are written like counts, as changes: a node writes a room when it gains its first member
there or loses its last, and the per-room node count keeps the cluster's room total a single
``HLEN``, so neither a heartbeat nor a ``/ws/stats`` request touches every room.

Scripts compute key names from the prefix, so this needs a single Redis (or a primary with
replicas), not Redis Cluster.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as redis

from ..presence import NodeSnapshot, Transitions, User

PREFIX = "gateway:"

_COMMON = """
local p = ARGV[1]
local users, names, conns = p .. 'presence:users', p .. 'presence:names', p .. 'presence:connections'
local roomnodes = p .. 'presence:rooms'
-- one node fewer has members in a room
local function drop_room(room)
  if redis.call('HINCRBY', roomnodes, room, -1) <= 0 then redis.call('HDEL', roomnodes, room) end
end
-- set one node's count for a user; append the transition (if any) to online/offline
local function set_count(nodekey, user, count, name, online, offline)
  local old = tonumber(redis.call('HGET', nodekey, user) or '0')
  if count == old then return end
  if count > 0 then redis.call('HSET', nodekey, user, count) else redis.call('HDEL', nodekey, user) end
  redis.call('INCRBY', conns, count - old)
  local before = tonumber(redis.call('HGET', users, user) or '0')
  local after = before + count - old
  if after > 0 then
    redis.call('HSET', users, user, after)
    if before <= 0 then
      redis.call('HSET', names, user, name)
      table.insert(online, user); table.insert(online, name)
    end
  else
    redis.call('HDEL', users, user)
    if before > 0 then
      table.insert(offline, user); table.insert(offline, redis.call('HGET', names, user) or name)
    end
    redis.call('HDEL', names, user)
  end
end
"""

# ARGV: prefix, node, replace (0/1), number of users, (user, count, name) triples, then rooms
# as '+name' (has members on this node) or '-name' (has none); replace: the list is complete
_APPLY = (
    _COMMON
    + """
local node, replace, nusers = ARGV[2], ARGV[3] == '1', tonumber(ARGV[4])
local nodekey, roomset = p .. 'presence:node:' .. node, p .. 'node:' .. node .. ':rooms'
redis.call('SADD', p .. 'nodes', node)
local online, offline, listed = {}, {}, {}
local first_room = 5 + 3 * nusers
for i = 5, first_room - 1, 3 do
  listed[ARGV[i]] = true
  set_count(nodekey, ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], online, offline)
end
local present = {}
for i = first_room, #ARGV do
  local room = string.sub(ARGV[i], 2)
  if string.sub(ARGV[i], 1, 1) == '+' then
    present[room] = true
    if redis.call('SADD', roomset, room) == 1 then redis.call('HINCRBY', roomnodes, room, 1) end
  elseif redis.call('SREM', roomset, room) == 1 then
    drop_room(room)
  end
end
if replace then
  for _, user in ipairs(redis.call('HKEYS', nodekey)) do
    if not listed[user] then set_count(nodekey, user, 0, user, online, offline) end
  end
  for _, room in ipairs(redis.call('SMEMBERS', roomset)) do
    if not present[room] then
      redis.call('SREM', roomset, room)
      drop_room(room)
    end
  end
end
return {online, offline}
"""
)

# ARGV: prefix
_SWEEP = (
    _COMMON
    + """
local online, offline = {}, {}
for _, node in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  if redis.call('EXISTS', p .. 'node:' .. node) == 0 then
    local nodekey = p .. 'presence:node:' .. node
    for _, user in ipairs(redis.call('HKEYS', nodekey)) do
      set_count(nodekey, user, 0, user, online, offline)
    end
    local roomset = p .. 'node:' .. node .. ':rooms'
    for _, room in ipairs(redis.call('SMEMBERS', roomset)) do drop_room(room) end
    redis.call('DEL', nodekey, roomset)
    redis.call('SREM', p .. 'nodes', node)
  end
end
return offline
"""
)

# ARGV: prefix, node, ttl ms, statistics json
_HEARTBEAT = """
local p, node, ttl = ARGV[1], ARGV[2], ARGV[3]
local alive = p .. 'node:' .. node
local existed = redis.call('EXISTS', alive)
redis.call('SET', alive, ARGV[4], 'PX', ttl)
redis.call('SADD', p .. 'nodes', node)
return existed
"""

# ARGV: prefix. O(nodes): every other figure is maintained by the writes.
_STATS = """
local p = ARGV[1]
local nodes = 0
for _, node in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  if redis.call('EXISTS', p .. 'node:' .. node) == 1 then nodes = nodes + 1 end
end
return {redis.call('HLEN', p .. 'presence:users'),
        tonumber(redis.call('GET', p .. 'presence:connections') or '0'), nodes,
        redis.call('HLEN', p .. 'presence:rooms')}
"""


def _pairs(flat: list[Any]) -> list[User]:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


class RedisPresenceStore:
    """Presence shared by all nodes through Redis (see the module docstring for the keys)."""

    clustered = True

    def __init__(self, client: redis.Redis, ttl: float, node_id: str) -> None:
        self.node_id = node_id
        self._redis = client
        self._alive_ms = int(ttl * 600)
        """The node key lives 0.6 ttl; with heartbeats and sweeps every 0.2 ttl a dead node's
        users are announced offline at most ``ttl`` after its last heartbeat."""
        self._apply = client.register_script(_APPLY)
        self._sweep = client.register_script(_SWEEP)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._stats = client.register_script(_STATS)

    async def apply(self, counts: dict[str, tuple[int, str]], rooms: dict[str, bool], replace: bool) -> Transitions:
        args: list[Any] = [PREFIX, self.node_id, int(replace), len(counts)]
        for user_id, (count, name) in counts.items():
            args += [user_id, count, name]
        args += [("+" if present else "-") + room for room, present in rooms.items()]
        online, offline = await self._apply(args=args)
        return Transitions(_pairs(online), _pairs(offline))

    async def heartbeat(self, snapshot: NodeSnapshot) -> bool:
        stats = {
            "clients": snapshot.clients,
            "online_users": snapshot.online_users,
            "rooms": snapshot.rooms,
            "transports": snapshot.transports,
            "uptime": round(snapshot.uptime, 1),
        }
        return not await self._heartbeat(args=[PREFIX, self.node_id, self._alive_ms, json.dumps(stats)])

    async def sweep(self) -> list[User]:
        return _pairs(await self._sweep(args=[PREFIX]))

    async def online(self, user_ids: list[str]) -> set[str]:
        if not user_ids:
            return set()
        counts = await self._redis.hmget(PREFIX + "presence:users", user_ids)
        return {uid for uid, count in zip(user_ids, counts, strict=True) if count is not None}

    async def users(self) -> list[User]:
        names = await self._redis.hgetall(PREFIX + "presence:names")
        return sorted(names.items())

    async def cluster_stats(self) -> dict[str, Any] | None:
        online_users, clients, nodes, rooms = await self._stats(args=[PREFIX])
        return {"total_clients": clients, "online_users": online_users, "total_rooms": rooms, "nodes": nodes}

    async def close(self) -> None:
        """Mark this node dead now rather than at expiry: whatever it could not write as gone
        is then cleaned up (and announced) by the next sweep of another node."""
        await self._redis.delete(PREFIX + "node:" + self.node_id)
