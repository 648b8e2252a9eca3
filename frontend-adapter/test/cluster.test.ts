/**
 * Two gateway nodes sharing a real Redis: clients on different nodes share rooms, and a client
 * whose node crashes comes back to it with its rooms and its queued messages.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ClientPool, Inbox, nextEvent } from './support/clients.js';
import { Gateway, withTimeout } from './support/gateway.js';
import { RedisServer } from './support/redis.js';

let redis: RedisServer;
let nodes: Gateway[] = [];

before(async () => {
  redis = await RedisServer.start();
  nodes = await Promise.all([Gateway.start({ REDIS_URL: redis.url }), Gateway.start({ REDIS_URL: redis.url })]);
});
after(async () => {
  await Promise.all(nodes.map((node) => node.stop()));
  await redis.stop();
});

test('a node crash: its client re-joins there and its queued messages reach the other node in order', async () => {
  const [first, second] = nodes as [Gateway, Gateway];
  const onFirst = new ClientPool(first.url);
  const onSecond = new ClientPool(second.url);
  try {
    const alice = await onFirst.connected('alice');
    const bob = await onSecond.connected('bob');
    await alice.joinRoom('lobby');
    await bob.joinRoom('lobby');
    const aliceInbox = new Inbox(alice, 'room_message');
    const bobInbox = new Inbox(bob, 'room_message');
    await alice.sendToRoom('lobby', 'across nodes');
    await bobInbox.waitFor(1);

    const lost = nextEvent(alice, 'state', (state) => state === 'reconnecting');
    await first.stop('SIGKILL');
    await lost;
    const texts = ['q1', 'q2', 'q3'];
    const sends = Promise.all(texts.map((text) => alice.sendToRoom('lobby', text)));
    await first.restart();
    await withTimeout(sends, 10_000, 'queued sends');

    await bobInbox.waitFor(1 + texts.length);
    assert.deepEqual(bobInbox.texts(), ['across nodes', ...texts]);
    await bob.sendToRoom('lobby', 'welcome back');
    await aliceInbox.waitFor(5);
    assert.equal(aliceInbox.texts().at(-1), 'welcome back');
    const direct = nextEvent(alice, 'user_message', (message) => message.content.text === 'direct');
    await bob.sendToUser('alice', 'direct');
    await direct;
  } finally {
    onFirst.closeAll();
    onSecond.closeAll();
  }
});
