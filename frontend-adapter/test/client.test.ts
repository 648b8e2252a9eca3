/**
 * RealtimeClient against a real gateway: connecting, auth refusals, every helper's ack and
 * error path, ping, timeouts, the offline queue's bound and giving up.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';

import {
  AuthError,
  DisconnectedError,
  QueueOverflowError,
  RealtimeClient,
  ServerError,
  TimeoutError,
  type ConnectionState,
  type QueuedRequest,
} from '../src/index.js';
import { ClientPool, Inbox, nextEvent, WAIT_MS } from './support/clients.js';
import { Gateway, mintToken, withTimeout } from './support/gateway.js';

const RATE_BURST = 30;
let gateway: Gateway;
let pool: ClientPool;

before(async () => {
  gateway = await Gateway.start({ RATE_BURST: String(RATE_BURST), RATE_LIMIT: '5' });
  pool = new ClientPool(gateway.url);
});
afterEach(() => pool.closeAll());
after(() => gateway.stop());

describe('connect', () => {
  test('connects, reports connecting -> connected, and the welcome names the token user', async () => {
    const client = pool.create('alice', { token: mintToken('alice', { username: 'Alice' }) });
    const states: ConnectionState[] = [];
    client.on('state', (state) => states.push(state));
    const welcome = nextEvent(client, 'welcome');
    await client.connect();
    const envelope = await welcome;
    assert.deepEqual(states, ['connecting', 'connected']);
    assert.equal(client.state, 'connected');
    assert.equal(envelope.content.user_id, 'alice');
    assert.equal(envelope.content.username, 'Alice');
    assert.equal(typeof envelope.id, 'string');
    assert.equal(typeof envelope.timestamp, 'number');
  });

  test('a wrongly signed token rejects with AuthError 401 and is not retried', async () => {
    const forged = `${mintToken('mallory').slice(0, -4)}AAAA`;
    const client = pool.create('mallory', { token: forged });
    let connectErrors = 0;
    client.on('connect_error', () => (connectErrors += 1));
    const authError = nextEvent(client, 'auth_error');
    await assert.rejects(client.connect(), (error: unknown) => {
      assert.ok(error instanceof AuthError);
      assert.equal(error.code, 401);
      assert.match(error.message, /signature/);
      return true;
    });
    assert.ok((await authError) instanceof AuthError);
    assert.equal(client.state, 'disconnected');
    assert.equal(connectErrors, 0, 'an auth refusal is not a retryable connect error');
    // Absence of a retry can only be shown by waiting: several times the 300 ms max backoff.
    const retried = nextEvent(client, 'state', () => true, 1_000).then(
      () => true,
      () => false,
    );
    assert.equal(await retried, false);
  });

  test('an expired token rejects with AuthError "token expired"', async () => {
    const client = pool.create('late', { token: mintToken('late', { ttlSeconds: -10 }) });
    await assert.rejects(client.connect(), { name: 'AuthError', code: 401, message: 'token expired' });
  });

  test('with nothing listening, gives up after reconnect.maxAttempts with DisconnectedError', async () => {
    const stopped = await Gateway.start();
    await stopped.stop();
    const client = new RealtimeClient({
      url: stopped.url,
      token: mintToken('nobody'),
      transports: ['websocket'],
      reconnect: { initialDelayMs: 10, maxDelayMs: 40, maxAttempts: 3 },
    });
    let failures = 0;
    client.on('connect_error', () => (failures += 1));
    await assert.rejects(withTimeout(client.connect(), WAIT_MS, 'give up'), DisconnectedError);
    assert.equal(failures, 3);
    assert.equal(client.state, 'disconnected');
  });
});

describe('helpers: acks and errors', () => {
  test('joinRoom / leaveRoom resolve with the ack and maintain rooms', async () => {
    const client = await pool.connected('alice');
    const roomEvents: Array<readonly string[]> = [];
    client.on('rooms', (rooms) => roomEvents.push(rooms));
    assert.deepEqual(await client.joinRoom('lobby'), { ok: true, room: 'lobby' });
    assert.deepEqual(client.rooms, ['lobby']);
    assert.deepEqual(await client.leaveRoom('lobby'), { ok: true, room: 'lobby' });
    assert.deepEqual(client.rooms, []);
    assert.deepEqual(roomEvents, [['lobby'], []]);
  });

  test('joinRoom rejects with the server error: 403 for user: rooms, 400 for a bad name', async () => {
    const client = await pool.connected('alice');
    await assert.rejects(client.joinRoom('user:bob'), (error: unknown) => {
      assert.ok(error instanceof ServerError);
      assert.equal(error.code, 403);
      assert.match(error.message, /reserved/);
      return true;
    });
    await assert.rejects(client.joinRoom(''), { name: 'ServerError', code: 400 });
    assert.deepEqual(client.rooms, []);
  });

  test('sendToRoom reaches the other members; the ack carries the message id', async () => {
    const alice = await pool.connected('alice');
    const bob = await pool.connected('bob');
    await alice.joinRoom('lobby');
    await bob.joinRoom('lobby');
    const bobInbox = new Inbox(bob, 'room_message');
    const ack = await alice.sendToRoom('lobby', { text: 'hello', mood: 'cheerful' });
    const [message] = await bobInbox.waitFor(1);
    assert.equal(ack['message_id'], message?.id);
    assert.equal(message?.room, 'lobby');
    assert.equal(message?.from, 'alice');
    assert.deepEqual(
      { text: (message?.content as { text: string }).text, mood: (message?.content as { mood: string }).mood },
      { text: 'hello', mood: 'cheerful' },
    );
  });

  test('sendToRoom rejects with 403 when not a member and 400 for missing text', async () => {
    const client = await pool.connected('alice');
    await assert.rejects(client.sendToRoom('elsewhere', 'hi'), { name: 'ServerError', code: 403 });
    await client.joinRoom('lobby');
    await assert.rejects(client.sendToRoom('lobby', { body: 'no text' }), { name: 'ServerError', code: 400 });
  });

  test('sendToUser reaches every connection of the user, and rejects a bad recipient with 400', async () => {
    const alice = await pool.connected('alice');
    const bobPhone = await pool.connected('bob');
    const bobLaptop = await pool.connected('bob');
    const inboxes = [new Inbox(bobPhone, 'user_message'), new Inbox(bobLaptop, 'user_message')];
    const ack = await alice.sendToUser('bob', 'psst');
    for (const inbox of inboxes) {
      const [message] = await inbox.waitFor(1);
      assert.equal(message?.id, ack['message_id']);
      assert.equal(message?.from, 'alice');
      assert.equal(message?.to, 'bob');
      assert.deepEqual(inbox.texts(), ['psst']);
    }
    await assert.rejects(alice.sendToUser('', 'nobody'), { name: 'ServerError', code: 400 });
  });

  test('presence() tells which users are online', async () => {
    const alice = await pool.connected('alice');
    await pool.connected('bob');
    assert.deepEqual(await alice.presence(['bob', 'ghost']), { bob: 'online', ghost: 'offline' });
    await assert.rejects(alice.request('presence', 'bob'), { name: 'ServerError', code: 400 });
  });

  test('request() forwards other events; an unknown one is refused with 400', async () => {
    const client = await pool.connected('alice');
    await assert.rejects(client.request('teleport', {}), { name: 'ServerError', code: 400, message: /unknown/ });
  });

  test('ping() resolves with the round trip time and the gateway answers with pong', async () => {
    const client = await pool.connected('alice');
    const pong = nextEvent(client, 'pong');
    const rtt = await client.ping();
    assert.ok(rtt > 0 && rtt < 1_000, `rtt ${rtt} ms`);
    assert.equal((await pong).type, 'pong');
  });

  test('a burst beyond the rate limit is refused with 429', async () => {
    const client = await pool.connected('alice');
    const results = await Promise.allSettled(Array.from({ length: RATE_BURST + 10 }, () => client.ping()));
    const refused = results.filter((result) => result.status === 'rejected');
    assert.ok(refused.length >= 5, `${refused.length} refused`);
    for (const result of refused) assert.equal((result.reason as ServerError).code, 429);
  });

  test('a request the gateway never answers rejects with TimeoutError', async () => {
    const client = await pool.connected('alice', { ackTimeoutMs: 300 });
    gateway.freeze();
    try {
      await assert.rejects(client.ping(), TimeoutError);
    } finally {
      gateway.thaw();
    }
    assert.ok((await client.ping()) > 0, 'usable again once the gateway answers');
  });
});

describe('offline queue', () => {
  test('is bounded: the oldest requests are dropped with queue_drop, the rest flushed in order', async () => {
    const bob = await pool.connected('bob');
    const bobInbox = new Inbox(bob, 'user_message');
    const alice = pool.create('alice', { queueSize: 3 });
    const dropped: QueuedRequest[] = [];
    alice.on('queue_drop', (request) => dropped.push(request));
    // allSettled at once: the drops reject their promises before connect() is even called.
    const settled = Promise.allSettled(['m1', 'm2', 'm3', 'm4', 'm5'].map((text) => alice.sendToUser('bob', text)));
    assert.equal(alice.queued, 3);
    assert.deepEqual(
      dropped.map((request) => (request.content as { text: string }).text),
      ['m1', 'm2'],
    );
    await alice.connect();
    const results = await settled;
    assert.ok(results[0]?.status === 'rejected' && results[0].reason instanceof QueueOverflowError);
    assert.ok(results[1]?.status === 'rejected' && results[1].reason instanceof QueueOverflowError);
    assert.deepEqual(
      results.slice(2).map((result) => result.status),
      ['fulfilled', 'fulfilled', 'fulfilled'],
    );
    await bobInbox.waitFor(3);
    assert.deepEqual(bobInbox.texts(), ['m3', 'm4', 'm5']);
    assert.equal(alice.queued, 0);
  });

  test('disconnect() rejects what is still queued', async () => {
    const client = pool.create('alice');
    const pending = client.sendToRoom('lobby', 'never sent');
    client.disconnect();
    await assert.rejects(pending, { name: 'ClientClosedError', code: 'closed' });
  });
});
