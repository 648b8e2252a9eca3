/**
 * RealtimeClient across gateway restarts and token expiry: reconnect, room re-join, the offline
 * queue flushed in order, tokens refreshed through getToken (and a dead token not retried).
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';

import type { ConnectionState } from '../src/index.js';
import { ClientPool, Inbox, nextEvent, reachState } from './support/clients.js';
import { Gateway, mintToken, withTimeout } from './support/gateway.js';

let gateway: Gateway;
let pool: ClientPool;

before(async () => {
  gateway = await Gateway.start();
  pool = new ClientPool(gateway.url);
});
afterEach(() => pool.closeAll());
after(() => gateway.stop());

/**
 * A getToken that can be held shut: while closed, the client's next attempt waits inside
 * getToken. Tests use it to decide when a client may come back, instead of racing its backoff.
 */
class TokenGate {
  calls = 0;
  #opened: Promise<void> = Promise.resolve();
  #open: () => void = () => undefined;

  constructor(readonly userId: string) {}

  readonly getToken = async (): Promise<string> => {
    this.calls += 1;
    await this.#opened;
    return mintToken(this.userId);
  };

  close(): void {
    this.#opened = new Promise((open) => (this.#open = open));
  }

  open(): void {
    this.#open();
  }
}

test('after a clean restart both clients reconnect, re-join their room, and messages flow', async () => {
  const alice = await pool.connected('alice');
  const bob = await pool.connected('bob');
  await alice.joinRoom('lobby');
  await bob.joinRoom('lobby');
  const states: ConnectionState[] = [];
  alice.on('state', (state) => states.push(state));
  // Generous bound: the gateway's graceful shutdown currently waits out its own 10 s timeout
  // while Socket.IO websocket clients are connected (reported as a server issue).
  const back = [alice, bob].map((client) => nextEvent(client, 'state', (state) => state === 'connected', 25_000));

  await gateway.restart('SIGTERM');
  await Promise.all(back);

  assert.deepEqual(states, ['reconnecting', 'connected']);
  assert.deepEqual(alice.rooms, ['lobby']);
  const aliceInbox = new Inbox(alice, 'room_message');
  const bobInbox = new Inbox(bob, 'room_message');
  await bob.sendToRoom('lobby', 'from bob');
  await alice.sendToRoom('lobby', 'from alice');
  await aliceInbox.waitFor(2);
  await bobInbox.waitFor(2);
  assert.deepEqual(aliceInbox.texts(), ['from bob', 'from alice']);
  assert.deepEqual(bobInbox.texts(), ['from bob', 'from alice']);
});

test('messages sent while the gateway is down are delivered after reconnect, in order', async () => {
  const gate = new TokenGate('alice');
  const alice = await pool.connected('alice', { getToken: gate.getToken });
  await alice.joinRoom('lobby');
  const bob = await pool.connected('bob');
  await bob.joinRoom('lobby');

  const lost = nextEvent(alice, 'state', (state) => state === 'reconnecting');
  await gateway.stop('SIGKILL');
  await lost;
  gate.close();
  const texts = ['one', 'two', 'three', 'four', 'five'];
  const sends = Promise.all(texts.map((text) => alice.sendToRoom('lobby', text)));
  assert.equal(alice.queued, texts.length);

  await gateway.restart();
  // Bob must be back in the room before alice flushes, or he would miss the messages.
  await reachState(bob, 'connected');
  const bobInbox = new Inbox(bob, 'room_message');
  gate.open();

  const acks = await withTimeout(sends, 10_000, 'queued sends');
  assert.ok(acks.every((ack) => ack.ok));
  await bobInbox.waitFor(texts.length);
  assert.deepEqual(bobInbox.texts(), texts);
  assert.equal(alice.queued, 0);
  assert.ok(gate.calls >= 2, 'getToken was asked again for the reconnect');
});

test('an expired token is replaced through getToken when the gateway closes the connection', async () => {
  let issued = 0;
  const alice = await pool.connected('alice', {
    // The first token lives 2 s; the gateway closes the connection when it expires.
    getToken: () => mintToken('alice', { ttlSeconds: issued++ === 0 ? 2 : 3600 }),
  });
  await alice.joinRoom('lobby');
  const expired = nextEvent(alice, 'error', (envelope) => envelope.content.code === 401, 6_000);
  const back = nextEvent(alice, 'state', (state) => state === 'connected', 8_000);
  assert.match((await expired).content.message, /expired/);
  await back;
  assert.equal(issued, 2);
  assert.deepEqual(alice.rooms, ['lobby']);
  assert.ok((await alice.ping()) > 0);
});

test('a fixed token that expires ends in AuthError, without a reconnect loop', async () => {
  const alice = await pool.connected('alice', { token: mintToken('alice', { ttlSeconds: 2 }) });
  let attempts = 0;
  alice.on('connect_error', () => (attempts += 1));
  const authError = nextEvent(alice, 'auth_error', () => true, 8_000);
  assert.equal((await authError).message, 'token expired');
  assert.equal(alice.state, 'disconnected');
  assert.equal(attempts, 0);
});

test('connect() while the gateway is down keeps trying and resolves once it is up', async () => {
  await gateway.stop('SIGKILL');
  const alice = pool.create('alice');
  let failures = 0;
  alice.on('connect_error', () => (failures += 1));
  const connecting = alice.connect();
  assert.equal(alice.state, 'connecting');
  await nextEvent(alice, 'connect_error');
  await gateway.restart();
  await withTimeout(connecting, 8_000, 'connect after the gateway came up');
  assert.ok(failures >= 1);
  assert.equal(alice.state, 'connected');
});
