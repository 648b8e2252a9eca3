/**
 * watchPresence against a gateway that tells only watchers (`--presence-announce watchers`):
 * the watched user's changes arrive, an unwatched one's do not, and the watch survives a
 * gateway restart (the client watches again before it reports `connected`).
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';

import type { Envelope } from '../src/index.js';
import { ClientPool, nextEvent } from './support/clients.js';
import { Gateway } from './support/gateway.js';

let gateway: Gateway;
let pool: ClientPool;

before(async () => {
  gateway = await Gateway.start({ PRESENCE_ANNOUNCE: 'watchers' });
  pool = new ClientPool(gateway.url);
});
afterEach(() => pool.closeAll());
after(() => gateway.stop());

const statusOf = (userId: string, status: string) => (envelope: Envelope) => {
  const content = envelope.content as { user_id?: unknown; status?: unknown };
  return content.user_id === userId && content.status === status;
};

test('a watched user is announced, before and after a gateway restart; others are not', async () => {
  const alice = await pool.connected('alice');
  assert.deepEqual(await alice.watchPresence(['bob']), { bob: 'offline' });
  const heard: string[] = [];
  alice.on('user_status', (envelope) => heard.push(String((envelope.content as { user_id?: unknown }).user_id)));

  let bobOnline = nextEvent(alice, 'user_status', statusOf('bob', 'online'));
  await pool.connected('carol'); // not watched: nothing for alice
  let bob = await pool.connected('bob');
  await bobOnline;
  assert.deepEqual(heard, ['bob']);

  bob.disconnect();
  const back = nextEvent(alice, 'state', (state) => state === 'connected', 25_000);
  await gateway.restart('SIGKILL');
  await back; // watching again by now
  bobOnline = nextEvent(alice, 'user_status', statusOf('bob', 'online'));
  bob = await pool.connected('bob');
  await bobOnline;

  await alice.unwatchPresence(['bob']);
  assert.deepEqual(await alice.watchPresence('*'), {});
  const daveOnline = nextEvent(alice, 'user_status', statusOf('dave', 'online'));
  await pool.connected('dave'); // watching everyone
  await daveOnline;
});
