// Reference server for the benchmarks: Node socket.io 4.8 speaking the gateway's protocol
// (same events, envelope and JWT auth as app/), so both can be driven by one load generator.
//
//   JWT_SECRET=s node bench/node-server/server.mjs --port 9000 [--redis-url redis://127.0.0.1:6380/0]
//
// REDIS_URL (or --redis-url) joins nodes through @socket.io/redis-adapter. A plain-WebSocket
// endpoint at /ws (JSON envelope in and out, issue 3) makes the "mixed room" scenario possible.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Server } from 'socket.io';
import { WebSocketServer } from 'ws';
import { verifyJwt } from '../shared/jwt.mjs';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.PORT || '8087' },
    host: { type: 'string', default: '127.0.0.1' },
    'redis-url': { type: 'string', default: process.env.REDIS_URL || '' },
  },
});
const secret = process.env.JWT_SECRET;
if (!secret) {
  console.error('JWT_SECRET is required');
  process.exit(2);
}

const envelope = (type, content, extra) => ({
  type, content, timestamp: Math.floor(Date.now() / 1000), id: randomUUID(), ...extra,
});
const ok = { ok: true };
const fail = (code, message) => ({ ok: false, error: { code, message } });
const validRoom = (r) => typeof r === 'string' && r.length >= 1 && r.length <= 128 && !r.startsWith('user:');

const httpServer = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"status":"ok"}');
  } else if (!req.url.startsWith('/socket.io/')) {
    res.writeHead(404).end();
  }
});

const io = new Server(httpServer, { cors: { origin: '*' } });

if (opts['redis-url']) {
  // Imported lazily so a single node never loads the Redis client.
  const { createClient } = await import('redis');
  const { createAdapter } = await import('@socket.io/redis-adapter');
  const pub = createClient({ url: opts['redis-url'] });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
}

io.use((socket, next) => {
  const user = verifyJwt(socket.handshake.auth?.token, secret);
  if (!user) {
    const err = new Error('invalid token');
    err.data = { code: 401, message: 'invalid token' };
    return next(err);
  }
  socket.data.user = user;
  next();
});

// Presence as the gateway announces it: user_status to every connection when a user's first
// connection opens and when their last one closes. Counted per node (the bench connects each
// user to one node only, so per-node counts equal cluster-wide ones there).
const connectionsOf = new Map();
function presence(user, delta) {
  const n = (connectionsOf.get(user.id) ?? 0) + delta;
  if (n > 0) connectionsOf.set(user.id, n); else connectionsOf.delete(user.id);
  if (n === (delta > 0 ? 1 : 0)) {
    io.emit('user_status', envelope('user_status',
      { user_id: user.id, user_name: user.name, status: n ? 'online' : 'offline' }));
  }
}

// The room protocol shared by both transports. `send(envelope)` reaches this connection only;
// `join(room)` / `has(room)` manage Socket.IO room membership; `toRoom(room, env)` broadcasts.
function handle(type, content, conn) {
  const { user } = conn;
  switch (type) {
    case 'join_room':
      if (!validRoom(content)) return fail(403, 'bad room');
      conn.join(content);
      return { ok: true, room: content };
    case 'room_message': {
      const room = content?.room;
      if (!conn.has(room)) return fail(403, 'not a member');
      io.to(room).emit('room_message',
        envelope('room_message', content, { from: user.id, from_name: user.name, room }));
      return ok;
    }
    case 'ping':
      conn.send(envelope('pong', null));
      return ok;
    default:
      return fail(400, `unknown type ${type}`);
  }
}

io.on('connection', (socket) => {
  const user = socket.data.user;
  socket.join(`user:${user.id}`);
  const conn = {
    user,
    join: (room) => socket.join(room),
    has: (room) => socket.rooms.has(room),
    send: (env) => socket.emit(env.type, env),
  };
  for (const type of ['join_room', 'room_message', 'ping']) {
    socket.on(type, (content, ack) => {
      const result = handle(type, content, conn);
      if (typeof ack === 'function') ack(result);
    });
  }
  conn.send(envelope('welcome', {
    sid: socket.id, user_id: user.id, username: user.name, server_time: Date.now() / 1000,
  }));
  presence(user, +1);
  socket.on('disconnect', () => presence(user, -1));
});

// Plain WebSocket members: each one is a "virtual" Socket.IO socket living in the adapter's room
// table, so io.to(room).emit() reaches them with no special case. We register a tiny object with
// the same client-facing interface socket.io's broadcast uses (client.writeToEngine).
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
httpServer.on('upgrade', (req, sock, head) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname !== '/ws') return; // engine.io handles /socket.io/
  const user = verifyJwt(url.searchParams.get('token'), secret);
  if (!user) {
    sock.end('HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n\r\n{"error":"invalid token"}');
    return;
  }
  wss.handleUpgrade(req, sock, head, (ws) => attachPlainWs(ws, user));
});

// One broadcast hands the same encoded string to every member: re-encode it once, not per member.
let lastPacket = null;
let lastEnvelope = null;
function envelopeOf(pkt) {
  if (pkt !== lastPacket) {
    lastPacket = pkt;
    lastEnvelope = JSON.stringify(JSON.parse(pkt.slice(1))[1]);
  }
  return lastEnvelope;
}

let plainSeq = 0;
function attachPlainWs(ws, user) {
  const id = `ws-${++plainSeq}`;
  const adapter = io.of('/').adapter;
  const rooms = new Set();
  // socket.io's broadcast path calls client.writeToEngine(encodedPackets, opts) on each member;
  // the encoded Socket.IO packet is `2["type",{envelope}]`: we send its envelope part.
  const fake = {
    id,
    client: {
      writeToEngine(encoded) {
        for (const pkt of encoded) {
          if (typeof pkt === 'string' && pkt[0] === '2') ws.send(envelopeOf(pkt));
        }
      },
    },
  };
  io.of('/').sockets.set(id, fake);
  const conn = {
    user,
    join: (room) => { rooms.add(room); adapter.addAll(id, new Set([room])); },
    has: (room) => rooms.has(room),
    send: (env) => ws.send(JSON.stringify(env)),
  };
  conn.join(`user:${user.id}`);
  ws.on('message', (data) => {
    let frame;
    try { frame = JSON.parse(data); } catch { return; }
    const content = frame.type === 'room_message' && frame.room && typeof frame.content === 'object'
      ? { ...frame.content, room: frame.content.room ?? frame.room } : frame.content;
    const result = handle(frame.type, content, conn);
    if (frame.id !== undefined) conn.send({ type: 'ack', content: { id: frame.id, ...result } });
  });
  ws.on('close', () => {
    adapter.delAll(id);
    io.of('/').sockets.delete(id);
    presence(user, -1);
  });
  conn.send(envelope('welcome', {
    sid: id, user_id: user.id, username: user.name, server_time: Date.now() / 1000,
  }));
  presence(user, +1);
}

httpServer.listen(Number(opts.port), opts.host, () => {
  console.log(`node socket.io ${opts.host}:${opts.port} redis=${opts['redis-url'] || 'off'}`);
});
