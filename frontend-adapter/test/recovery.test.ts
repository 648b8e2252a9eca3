/**
 * Connection-state recovery through RealtimeClient, GatewayWebSocket and the Pinia store, against
 * a real gateway behind a TCP proxy that breaks connections: after a drop the session resumes
 * (rooms kept, every missed message delivered once, in order) and `recovery` says so; after a
 * gateway restart it cannot, and `recovery` says that too.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';

import { createPinia, setActivePinia } from 'pinia';

import { GatewayRecoveryEvent, GatewayWebSocket, type RealtimeClient } from '../src/index.js';
import { useRealtimeStore } from '../src/pinia/index.js';
import { ClientPool, Inbox, nextEvent, reachState } from './support/clients.js';
import { Gateway, mintToken, withTimeout } from './support/gateway.js';
import { TcpProxy } from './support/proxy.js';
import { until } from './support/vue.js';

let gateway: Gateway;
let proxy: TcpProxy;
let direct: ClientPool;
let proxied: ClientPool;

before(async () => {
  gateway = await Gateway.start();
  proxy = await TcpProxy.start(gateway.port);
  direct = new ClientPool(gateway.url);
  proxied = new ClientPool(proxy.url);
});
afterEach(() => {
  direct.closeAll();
  proxied.closeAll();
  proxy.unblock();
});
after(async () => {
  await proxy.close();
  await gateway.stop();
});

/** Breaks `client`'s connection, lets `whileAway` run while it cannot come back, then lets it. */
async function dropDuring(client: RealtimeClient, whileAway: () => Promise<void>): Promise<boolean> {
  const lost = nextEvent(client, 'state', (state) => state === 'reconnecting');
  proxy.cut();
  await lost;
  await whileAway();
  const report = nextEvent(client, 'recovery');
  proxy.unblock();
  const { recovered } = await report;
  await reachState(client, 'connected');
  return recovered;
}

test('a dropped RealtimeClient resumes: rooms kept, missed messages once and in order', async () => {
  const alice = await proxied.connected('rec-alice');
  const bob = await direct.connected('rec-bob');
  await alice.joinRoom('rec-lobby');
  await bob.joinRoom('rec-lobby');
  const inbox = new Inbox(alice, 'room_message');
  await bob.sendToRoom('rec-lobby', 'before');
  await inbox.waitFor(1);
  let rejoins = 0;
  alice.on('rooms', () => (rejoins += 1));

  const recovered = await dropDuring(alice, async () => {
    for (const text of ['one', 'two', 'three']) await bob.sendToRoom('rec-lobby', text);
  });

  assert.equal(recovered, true);
  assert.equal(alice.recovered, true);
  await inbox.waitFor(4);
  await bob.sendToRoom('rec-lobby', 'after');
  await inbox.waitFor(5);
  assert.deepEqual(inbox.texts(), ['before', 'one', 'two', 'three', 'after']);
  assert.equal(new Set(inbox.envelopes.map((envelope) => envelope.id)).size, 5);
  assert.deepEqual(alice.rooms, ['rec-lobby']);
  assert.equal(rejoins, 0);
});

test('a long-polling RealtimeClient resumes too', async () => {
  const alice = await proxied.connected('rec-polly', { transports: ['polling'] });
  const bob = await direct.connected('rec-pete');
  await alice.joinRoom('rec-polling');
  await bob.joinRoom('rec-polling');
  const inbox = new Inbox(alice, 'room_message');
  await bob.sendToRoom('rec-polling', 'before');
  await inbox.waitFor(1);
  const recovered = await dropDuring(alice, async () => {
    for (const text of ['one', 'two']) await bob.sendToRoom('rec-polling', text);
  });
  assert.equal(recovered, true);
  await inbox.waitFor(3);
  await bob.sendToRoom('rec-polling', 'after');
  await inbox.waitFor(4);
  assert.deepEqual(inbox.texts(), ['before', 'one', 'two', 'after']);
});

test('after a gateway restart the session is gone: recovery false, rooms joined again', async () => {
  const alice = await direct.connected('rec-carol');
  await alice.joinRoom('rec-restart');
  const report = nextEvent(alice, 'recovery', () => true, 20_000);
  await gateway.restart('SIGKILL');
  assert.deepEqual(await report, { recovered: false });
  await reachState(alice, 'connected', 20_000);
  const bob = await direct.connected('rec-dave');
  await bob.joinRoom('rec-restart');
  const inbox = new Inbox(alice, 'room_message');
  await bob.sendToRoom('rec-restart', 'still a member');
  await inbox.waitFor(1);
  assert.deepEqual(inbox.texts(), ['still a member']);
});

test('GatewayWebSocket stays open across a drop and dispatches a recovery event', async () => {
  const bob = await direct.connected('rec-erin');
  await bob.joinRoom('rec-ws');
  const socket = new GatewayWebSocket(`ws://127.0.0.1:1/ws?token=${mintToken('rec-frank')}`, undefined, {
    url: proxy.url,
    transports: ['websocket'],
    reconnect: { initialDelayMs: 50, maxDelayMs: 300 },
  });
  const missed = new Promise<string>((resolve) => {
    socket.onmessage = (event) => {
      const envelope = JSON.parse(String(event.data)) as { type: string; content: { text?: string } };
      if (envelope.type === 'room_message') resolve(envelope.content.text ?? '');
    };
  });
  try {
    await withTimeout(new Promise((resolve) => socket.addEventListener('open', resolve, { once: true })), 8_000, 'open');
    await socket.client.joinRoom('rec-ws');
    const recovery = new Promise<GatewayRecoveryEvent>((resolve) =>
      socket.addEventListener('recovery', (event) => resolve(event as GatewayRecoveryEvent), { once: true }),
    );
    const recovered = await dropDuring(socket.client, async () => {
      await bob.sendToRoom('rec-ws', 'while away');
    });
    assert.equal(recovered, true);
    assert.equal((await withTimeout(recovery, 8_000, 'recovery event')).recovered, true);
    assert.equal(socket.readyState, GatewayWebSocket.OPEN);
    assert.equal(await withTimeout(missed, 8_000, 'the missed message'), 'while away');
  } finally {
    socket.close();
  }
});

test('the Pinia store exposes whether the last reconnect recovered', async () => {
  setActivePinia(createPinia());
  const store = useRealtimeStore();
  await store.connect(mintToken('rec-grace'), {
    url: proxy.url,
    transports: ['websocket'],
    reconnect: { initialDelayMs: 50, maxDelayMs: 300 },
  });
  try {
    assert.equal(store.recovered, null);
    assert.equal(store.user?.recovered, false);
    proxy.cut();
    await until(() => store.state === 'reconnecting', 'reconnecting');
    proxy.unblock();
    await until(() => store.recovered === true, 'recovered');
    assert.equal(store.user?.recovered, true);
  } finally {
    store.disconnect();
  }
});
