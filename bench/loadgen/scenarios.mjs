// The bench scenarios. Each takes the parsed options and returns a flat object of results.
// Every loop here is bounded: by a message count, a duration, or a stall timeout.
import { signJwt } from '../shared/jwt.mjs';
import { CLIENTS, mark } from './clients.mjs';
import { cpuWindow, latencySummary, nowMicros, rssBytes } from './measure.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ROOM = 'bench';
const MAX_IN_FLIGHT = 100_000; // fixed-rate runs: messages not yet delivered everywhere, at most

// Connection i belongs to user i % users (users 0: a user per connection). Why share users at
// all: the gateway announces every user's first connection to every connection (user_status),
// so N distinct users connecting cost N²/2 deliveries; that would swamp the cases measured here.
function tokenFor(i, o) {
  const user = o.users > 0 ? i % o.users : i;
  const exp = Math.floor(Date.now() / 1000) + 3600;
  return signJwt({ user_id: `u${user}`, username: `user ${user}`, exp }, o.secret);
}

// --watch K: connection i watches the presence of the K users after its own (as a contact list
// would), so each user's first connection is announced to K watchers instead of to everyone.
function watchList(i, o) {
  const users = o.users > 0 ? o.users : o.clients;
  const own = o.users > 0 ? i % o.users : i;
  return Array.from({ length: Math.min(o.watch, users - 1) }, (_, k) => `u${(own + k + 1) % users}`);
}

// Opens `count` connections, at most `concurrency` handshakes in flight. makeClient(i) returns
// {Client, url, hooks}. Resolves to {clients, latencies (µs), failed, firstError}.
async function openMany(count, concurrency, opts, makeClient) {
  const clients = new Array(count);
  const latencies = [];
  let failed = 0;
  let firstError = null;
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      const { Client, url, hooks } = makeClient(i);
      const t0 = nowMicros();
      try {
        clients[i] = await Client.open(url, tokenFor(i, opts), hooks, opts);
        latencies.push(nowMicros() - t0);
        if (opts.watch > 0) clients[i].emit('watch_presence', watchList(i, opts));
      } catch (err) {
        failed++;
        firstError ??= err.message;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { clients: clients.filter(Boolean), latencies, failed, firstError };
}

const closeAll = (clients) => clients.forEach((c) => c.close());

// Bookkeeping for one fan-out: which member got which message, in which order, how late.
class FanoutTracker {
  constructor(members, total, warmup) {
    Object.assign(this, { members, total, warmup });
    this.seen = new Uint8Array(members * total);
    this.perMessage = new Uint32Array(total);
    this.lastSeq = new Int32Array(members).fill(-1);
    this.latencies = new Float64Array(members * (total - warmup));
    this.nLat = 0;
    this.delivered = 0;
    this.duplicates = 0;
    this.outOfOrder = 0;
    this.malformed = 0;
    this.completed = 0;
    this.lastDeliveryAt = 0;
    this.wake = null;
  }

  record(member, seq, sentAt) {
    if (seq < 0 || seq >= this.total) { this.malformed++; return; }
    const at = nowMicros();
    const slot = member * this.total + seq;
    if (this.seen[slot]) { this.duplicates++; return; }
    this.seen[slot] = 1;
    if (seq < this.lastSeq[member]) this.outOfOrder++;
    this.lastSeq[member] = seq;
    this.delivered++;
    if (seq >= this.warmup) {
      this.latencies[this.nLat++] = at - sentAt;
      this.lastDeliveryAt = at;
    }
    if (++this.perMessage[seq] === this.members) {
      this.completed++;
      if (this.wake) { this.wake(); this.wake = null; }
    }
  }

  // Waits until a message completes; false if nothing at all arrived for stallMs (loss).
  async progress(stallMs) {
    const before = this.delivered;
    for (;;) {
      const woke = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), stallMs);
        this.wake = () => { clearTimeout(timer); resolve(true); };
      });
      if (woke) return true;
      if (this.delivered === before) return false;
    }
  }
}

// N members in one room (the sender among them), M marked messages from one sender with at most
// `window` messages not yet delivered to every member. Used for plain, mixed and cluster fan-out:
// member i connects to urls[i % urls.length] and is a plain-WS client when i falls in the ws share.
export async function fanout(o) {
  const total = o.warmup + o.messages;
  const tracker = new FanoutTracker(o.clients, total, o.warmup);
  const wsEvery = o.wsShare > 0 ? Math.round(1 / o.wsShare) : 0;
  const kindOf = (i) => (wsEvery && i % wsEvery === wsEvery - 1 ? 'ws' : o.client);
  const { clients, failed, firstError } = await openMany(o.clients, o.concurrency, o, (i) => ({
    Client: CLIENTS[kindOf(i)],
    url: o.urls[i % o.urls.length],
    hooks: { onMark: (seq, t) => tracker.record(i, seq, t) },
  }));
  if (failed) {
    closeAll(clients);
    return { error: `${failed} of ${o.clients} connections failed: ${firstError}` };
  }
  const acks = await Promise.all(clients.map((c) => c.request('join_room', ROOM)));
  const refused = acks.filter((a) => !a?.ok).length;
  if (refused) {
    closeAll(clients);
    return { error: `${refused} join_room refused` };
  }
  if (o.urls.length > 1) await sleep(200); // let every node's Redis subscription settle

  const sender = clients[0];
  let cpu = null;
  let startedAt = 0;
  let stalled = false;
  for (let seq = 0; seq < total && !stalled; seq++) {
    if (seq === o.warmup) {
      // Measure from a drained pipe: every warm-up message delivered everywhere.
      while (tracker.completed < o.warmup && !stalled) stalled = !(await tracker.progress(o.stallMs));
      cpu = cpuWindow(o.pids);
      startedAt = nowMicros();
    }
    if (o.rate > 0 && seq >= o.warmup) {
      // open loop: each message at its time, whatever is still in flight (bounded for memory)
      const due = startedAt + ((seq - o.warmup) * 1e6) / o.rate;
      if (due > nowMicros()) await sleep((due - nowMicros()) / 1000);
      while (seq - tracker.completed >= MAX_IN_FLIGHT && !stalled) stalled = !(await tracker.progress(o.stallMs));
    } else {
      while (seq - tracker.completed >= o.window && !stalled) stalled = !(await tracker.progress(o.stallMs));
    }
    sender.emit('room_message', { room: ROOM, text: mark(seq, nowMicros()) });
  }
  while (tracker.completed < total && !stalled) stalled = !(await tracker.progress(o.stallMs));
  const usage = cpu ? cpu.stop() : {};
  closeAll(clients);

  const measured = tracker.nLat;
  const seconds = (tracker.lastDeliveryAt - startedAt) / 1e6;
  return {
    ...(o.rate > 0 ? { rate: o.rate } : {}),
    members: o.clients,
    ws_members: wsEvery ? clients.filter((_, i) => kindOf(i) === 'ws').length : 0,
    messages: o.messages,
    delivered: measured,
    msgs_per_s: seconds > 0 ? Math.round(measured / seconds) : 0,
    ...latencySummary(tracker.latencies.subarray(0, measured)),
    lost: o.clients * total - tracker.delivered,
    duplicated: tracker.duplicates,
    out_of_order: tracker.outOfOrder,
    malformed: tracker.malformed,
    ...usage,
  };
}

// Chat-shaped load: `clients` members in rooms of `roomSize` (client i in room i / roomSize), every
// client sending to its room. Saturation (rate 0): each client sends its next message once its
// previous one reached every member (a closed loop per sender, `messages` each after one warm-up
// round). Fixed rate: `rate` messages/s over all clients for `durationMs`, round-robin, open loop.
// Every member must receive every message of its room once, each sender's in order.
export async function rooms(o) {
  const size = o.roomSize;
  if (size < 1 || size > 32 || o.clients % size) return { error: 'clients must be a multiple of room-size (1..32)' };
  const fixed = o.rate > 0;
  const perClient = fixed ? 0 : o.messages;
  const total = fixed ? o.clients + Math.ceil((o.rate * o.durationMs) / 1000) : o.clients * (1 + perClient);
  const senderOf = new Int32Array(total); // message seq -> sending client
  const count = new Uint8Array(total);
  const bits = new Uint32Array(total); // which members of the room have it
  const lastFrom = new Int32Array(o.clients * size).fill(-1); // receiver x sender-in-room -> last seq
  const latencies = new Float64Array(total * size);
  let nLat = 0;
  let delivered = 0;
  let duplicates = 0;
  let outOfOrder = 0;
  let malformed = 0;
  let completed = 0;
  let sent = 0;
  let measureFrom = Infinity; // seq of the first measured message
  let lastDeliveryAt = 0;
  const waiting = new Map(); // seq -> resolve, for closed-loop senders
  let wakeAll = null;
  const record = (member, seq, sentAt) => {
    if (seq < 0 || seq >= sent) { malformed++; return; }
    const at = nowMicros();
    const sender = senderOf[seq];
    const j = member % size;
    if (((sender / size) | 0) !== ((member / size) | 0)) { malformed++; return; }
    if (bits[seq] & (1 << j)) { duplicates++; return; }
    bits[seq] |= 1 << j;
    const slot = member * size + (sender % size);
    if (seq < lastFrom[slot]) outOfOrder++;
    lastFrom[slot] = seq;
    delivered++;
    if (seq >= measureFrom) { latencies[nLat++] = at - sentAt; lastDeliveryAt = at; }
    if (++count[seq] === size) {
      completed++;
      const done = waiting.get(seq);
      if (done) { waiting.delete(seq); done(); }
      if (wakeAll) { wakeAll(); wakeAll = null; }
    }
  };
  const { clients, failed, firstError } = await openMany(o.clients, o.concurrency, o, (i) => ({
    Client: CLIENTS[o.client],
    url: o.urls[i % o.urls.length],
    hooks: { onMark: (seq, t) => record(i, seq, t) },
  }));
  if (failed) {
    closeAll(clients);
    return { error: `${failed} of ${o.clients} connections failed: ${firstError}` };
  }
  const roomOf = (i) => `${ROOM}-${(i / size) | 0}`;
  const acks = await Promise.all(clients.map((c, i) => c.request('join_room', roomOf(i))));
  if (acks.some((a) => !a?.ok)) {
    closeAll(clients);
    return { error: `${acks.filter((a) => !a?.ok).length} join_room refused` };
  }
  if (o.urls.length > 1) await sleep(200);
  const send = (i) => {
    const seq = sent++;
    senderOf[seq] = i;
    clients[i].emit('room_message', { room: roomOf(i), text: mark(seq, nowMicros()) });
    return seq;
  };
  // Waits until `target` messages are complete; false after stallMs without any delivery.
  const until = async (target) => {
    while (completed < target) {
      const before = delivered;
      const woke = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), o.stallMs);
        wakeAll = () => { clearTimeout(timer); resolve(true); };
      });
      if (!woke && delivered === before) return false;
    }
    return true;
  };
  // warm-up: one message from every client, all delivered before measuring
  clients.forEach((_, i) => send(i));
  let stalled = !(await until(o.clients));
  measureFrom = sent;
  const cpu = cpuWindow(o.pids);
  const startedAt = nowMicros();
  if (!stalled && fixed) {
    const n = total - o.clients;
    for (let k = 0; k < n;) {
      const due = Math.min(n, Math.floor(((nowMicros() - startedAt) / 1e6) * o.rate) + 1);
      for (; k < due; k++) send(k % o.clients);
      await sleep(2);
    }
    stalled = !(await until(total));
  } else if (!stalled) {
    await Promise.all(clients.map(async (_, i) => {
      for (let m = 0; m < perClient && !stalled; m++) {
        const seq = send(i);
        if (count[seq] < size) {
          const ok = await new Promise((resolve) => {
            const timer = setTimeout(() => resolve(false), o.stallMs * 4);
            waiting.set(seq, () => { clearTimeout(timer); resolve(true); });
          });
          if (!ok) stalled = true;
        }
      }
    }));
    if (!stalled) stalled = !(await until(total));
  }
  const usage = cpu.stop();
  closeAll(clients);
  const seconds = (lastDeliveryAt - startedAt) / 1e6;
  return {
    ...(fixed ? { rate: o.rate } : {}),
    members: o.clients,
    rooms: o.clients / size,
    messages: sent - measureFrom,
    delivered: nLat,
    msgs_per_s: seconds > 0 ? Math.round(nLat / seconds) : 0,
    ...latencySummary(latencies.subarray(0, nLat)),
    lost: sent * size - delivered,
    duplicated: duplicates,
    out_of_order: outOfOrder,
    malformed,
    ...usage,
  };
}

// Connect rate (handshake to "welcome", `concurrency` in flight) and then the server's resident
// memory per idle connection: RSS growth over a warmed-up baseline, divided by N.
export async function connect(o) {
  const rss = () => o.pids.reduce((sum, pid) => sum + rssBytes(pid), 0);
  const hooks = { onMark() {} };
  const warm = await openMany(Math.min(20, o.clients), o.concurrency, o,
    () => ({ Client: CLIENTS[o.client], url: o.urls[0], hooks }));
  closeAll(warm.clients);
  await sleep(o.settleMs);
  const rss0 = rss();

  const cpu = cpuWindow(o.pids);
  const t0 = nowMicros();
  const { clients, latencies, failed } = await openMany(o.clients, o.concurrency, o,
    (i) => ({ Client: CLIENTS[o.client], url: o.urls[i % o.urls.length], hooks }));
  const seconds = (nowMicros() - t0) / 1e6;
  const usage = cpu.stop();
  await sleep(o.settleMs);
  const rss1 = rss();
  closeAll(clients);
  return {
    connections: clients.length,
    failed,
    conns_per_s: Math.round(clients.length / seconds),
    ...latencySummary(latencies),
    kb_per_conn: Math.round(((rss1 - rss0) / Math.max(1, clients.length) / 1024) * 10) / 10,
    ...usage,
  };
}

// Many idle connections, for one process of a multi-process run (bench/scale.py): connect
// `clients` (from --local-address), join one room, stay idle until --hold-until (epoch ms; every
// process connects by then) while the servers' CPU is measured (the heartbeats), then at
// --send-at the --sender process sends one marked room_message, and every process counts how many
// of its connections received it within --stall-ms.
export async function hold(o) {
  const waitUntil = (epochMs) => sleep(Math.max(0, epochMs - Date.now()));
  let received = 0;
  const latencies = [];
  const t0 = nowMicros();
  const { clients, failed, firstError } = await openMany(o.clients, o.concurrency, o, (i) => ({
    Client: CLIENTS.minimal,
    url: o.urls[i % o.urls.length],
    hooks: { onMark: (seq, t) => { received++; latencies.push(nowMicros() - t); } },
  }));
  const connectSeconds = (nowMicros() - t0) / 1e6;
  const acks = await Promise.all(clients.map((c) => c.request('join_room', ROOM).catch(() => null)));
  const joined = acks.filter((a) => a?.ok).length;
  if (Date.now() > o.holdFrom) {
    closeAll(clients);
    return { error: `not connected by --hold-from (${connectSeconds.toFixed(1)} s, ${failed} failed: ${firstError})` };
  }
  await waitUntil(o.holdFrom);
  const cpu = cpuWindow(o.pids);
  await waitUntil(o.holdUntil);
  const usage = cpu.stop();
  const rss = o.pids.reduce((sum, pid) => sum + rssBytes(pid), 0);
  await waitUntil(o.sendAt);
  if (o.sender && clients.length) clients[0].emit('room_message', { room: ROOM, text: mark(0, nowMicros()) });
  const deadline = Date.now() + o.stallMs;
  while (received < clients.length && Date.now() < deadline) await sleep(50);
  const result = {
    connections: clients.length,
    failed,
    ...(firstError ? { first_error: firstError } : {}),
    joined,
    conns_per_s: Math.round(clients.length / connectSeconds),
    connect_seconds: Math.round(connectSeconds * 10) / 10,
    received,
    ...latencySummary(latencies),
    rss_mb: Math.round(rss / 1048576),
    ...usage,
  };
  closeAll(clients);
  return result;
}

// `clients` connections, each in a closed loop for `durationMs`: send a request, wait for its
// answer. ping: `ping` without an ack, answered by a `pong` envelope; ack: `join_room` with an ack
// (the room is joined the first time, so the rest measure the ack path itself).
async function roundTrips(o, sendAndWait) {
  const waiters = new Array(o.clients).fill(null);
  const { clients, failed, firstError } = await openMany(o.clients, o.concurrency, o, (i) => ({
    Client: CLIENTS[o.client],
    url: o.urls[i % o.urls.length],
    hooks: {
      onMark() {},
      onEnvelope(env) {
        if (env?.type === 'pong' && waiters[i]) { waiters[i](); waiters[i] = null; }
      },
    },
  }));
  if (failed) {
    closeAll(clients);
    return { error: `${failed} of ${o.clients} connections failed: ${firstError}` };
  }
  const latencies = [];
  let lost = 0;
  const cpu = cpuWindow(o.pids);
  const t0 = nowMicros();
  const deadline = t0 + o.durationMs * 1000;
  await Promise.all(clients.map(async (c, i) => {
    while (nowMicros() < deadline) {
      const sent = nowMicros();
      const answered = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), o.stallMs);
        const done = () => { clearTimeout(timer); resolve(true); };
        sendAndWait(c, done, (fn) => { waiters[i] = fn; });
      });
      if (!answered) { lost++; return; }
      latencies.push(nowMicros() - sent);
    }
  }));
  const seconds = (nowMicros() - t0) / 1e6;
  const usage = cpu.stop();
  closeAll(clients);
  return {
    clients: clients.length,
    round_trips: latencies.length,
    rtt_per_s: Math.round(latencies.length / seconds),
    ...latencySummary(latencies),
    lost,
    ...usage,
  };
}

export const ping = (o) => roundTrips(o, (c, done, waitPong) => { waitPong(done); c.emit('ping', null); });

export const ack = (o) => roundTrips(o, (c, done) => {
  c.request('join_room', ROOM).then((answer) => { if (answer?.ok) done(); }, () => {});
});

export const SCENARIOS = { fanout, rooms, connect, ping, ack, hold };
