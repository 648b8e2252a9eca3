/**
 * useRealtimeStore after a scripted session against a real gateway: connection state, user,
 * rooms, messages, online users (user_status), notifications (published over HTTP by a
 * "back end"), errors of the seed-style actions, and disconnect.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, test } from 'node:test';

import { createPinia, setActivePinia } from 'pinia';
import { watch } from 'vue';

import { useRealtimeStore, type RealtimeStoreOptions } from '../src/pinia/index.js';
import { ClientPool, Inbox } from './support/clients.js';
import { Gateway, mintToken } from './support/gateway.js';
import { until } from './support/vue.js';

let gateway: Gateway;
let pool: ClientPool;
let options: RealtimeStoreOptions;

before(async () => {
  gateway = await Gateway.start();
  pool = new ClientPool(gateway.url);
  options = { url: gateway.url, transports: ['websocket'], reconnect: { initialDelayMs: 50, maxDelayMs: 300 } };
});
beforeEach(() => setActivePinia(createPinia()));
afterEach(() => {
  pool.closeAll();
  useRealtimeStore().disconnect();
});
after(() => gateway.stop());

test('a scripted session leaves the store in the expected state', async () => {
  const store = useRealtimeStore();
  const states: string[] = [];
  watch(() => store.state, (state) => states.push(state), { flush: 'sync' });

  await store.connect(mintToken('alice', { username: 'Alice' }), options);
  assert.equal(store.connected, true);
  assert.equal(store.user?.user_id, 'alice');
  assert.equal(store.user?.username, 'Alice');

  const bob = await pool.connected('bob', { token: mintToken('bob', { username: 'Bob' }) });
  await until(() => store.onlineUsers.some((user) => user.user_id === 'bob'), 'bob online');
  assert.deepEqual(
    store.onlineUsers.find((user) => user.user_id === 'bob'),
    { user_id: 'bob', user_name: 'Bob' },
  );

  await store.joinRoom('lobby');
  assert.deepEqual(store.rooms, ['lobby']);
  await bob.joinRoom('lobby');
  const bobInbox = new Inbox(bob, 'room_message');
  await bob.sendToRoom('lobby', 'hi alice');
  await store.send({ type: 'room_message', content: { room: 'lobby', text: 'hi bob' } });
  await bobInbox.waitFor(2);
  assert.deepEqual(bobInbox.texts(), ['hi alice', 'hi bob']);
  await until(
    () => store.messages.some((message) => message.type === 'room_message' && message.from === 'bob'),
    'bob message in store',
  );
  assert.equal(store.lastError?.message, undefined);

  // The seed-style send() never rejects: a refusal lands in lastError.
  await store.send({ type: 'join_room', content: 'user:bob' });
  assert.equal(store.lastError?.code, 403);

  await gateway.publish({ user: 'alice' }, 'notification', { title: 'Order shipped', body: 'Order 1', link: '/o/1' });
  await gateway.publish({ user: 'alice' }, 'notification', { title: 'Order delivered', body: 'Order 1' });
  await until(() => store.notifications.length === 2, 'two notifications');
  assert.deepEqual(
    store.notifications.map((notification) => notification.content.title),
    ['Order shipped', 'Order delivered'],
  );
  assert.equal(store.unreadCount, 2);
  store.markNotificationRead(store.notifications[0]?.id ?? '');
  assert.equal(store.unreadCount, 1);
  store.markAllNotificationsRead();
  assert.equal(store.unreadCount, 0);

  bob.disconnect();
  await until(() => !store.onlineUsers.some((user) => user.user_id === 'bob'), 'bob offline');
  await store.leaveRoom('lobby');
  assert.deepEqual(store.rooms, []);
  assert.ok((await store.ping()) > 0);

  const kept = store.messages.length;
  store.disconnect();
  assert.equal(store.connected, false);
  assert.equal(store.user, null);
  assert.deepEqual(store.onlineUsers, []);
  assert.equal(store.messages.length, kept, 'history survives disconnect');
  assert.deepEqual(states, ['connecting', 'connected', 'disconnected']);
});

test('a refused token: connect() resolves, lastError holds the AuthError', async () => {
  const store = useRealtimeStore();
  await store.connect(mintToken('alice', { ttlSeconds: -1 }), options);
  assert.equal(store.connected, false);
  assert.equal(store.state, 'disconnected');
  assert.equal(store.lastError?.name, 'AuthError');
  assert.equal(store.lastError?.message, 'token expired');
});

test('messages keep only the newest maxMessages envelopes', async () => {
  const store = useRealtimeStore();
  await store.connect(mintToken('alice'), { ...options, maxMessages: 2 });
  for (let index = 0; index < 3; index += 1) await store.ping();
  await until(() => store.messages.every((message) => message.type === 'pong'), 'only pongs left');
  assert.equal(store.messages.length, 2);
});
