// Browser scenarios for the gateway's console page, run by tests/test_console.py.
//
//   node tests/browser/console.spec.mjs <scenario>
//
// CONSOLE_TEST (JSON) says where the gateways are and what to use: {urls: [...], tokens: {...},
// apiKey, python, redisUrl, chromium, outDir}. Headless Chromium is driven by playwright-core,
// installed with the console's devDependencies (console/package.json). Every wait is bounded;
// the process exits 0 when the scenario passed, 1 with the reason (and screenshots) otherwise.
// A scenario that needs the driver to act (restart the gateway) prints `DRIVER <request>` and
// reads the answer from stdin.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';

const require = createRequire(new URL('../../console/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const { io } = require('socket.io-client');

const config = JSON.parse(process.env.CONSOLE_TEST ?? '{}');
const WAIT = 10_000;
const LAPTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const run = promisify(execFile);

const pages = [];
const problems = [];
/** Console errors that are expected: a refused fetch (a wrong API key on purpose) logs "Failed to
 * load resource"; a scenario that stops the gateway adds refused WebSocket connections. */
const expectedErrors = [/^Failed to load resource/];

async function openConsole(browser, name, url, viewport = LAPTOP) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (error) => problems.push(`${name}: uncaught ${error.stack ?? error}`));
  page.on('console', (message) => {
    // anything else at error level (an exception, a Content-Security-Policy refusal) is a failure
    if (message.type() === 'error' && !expectedErrors.some((pattern) => pattern.test(message.text()))) {
      problems.push(`${name}: console error: ${message.text()}`);
    }
  });
  pages.push({ name, page, context });
  await page.goto(url);
  await page.locator('body[data-ready="true"]').waitFor();
  return page;
}

const byId = (page, testId) => page.getByTestId(testId);

async function loginWithDevToken(page, username) {
  await byId(page, 'dev-token-form').waitFor({ state: 'visible' });
  await byId(page, 'dev-username').fill(username);
  await byId(page, 'dev-token-connect').click();
  await connected(page);
}

async function loginWithJwt(page, token) {
  assert.equal(await byId(page, 'dev-token-form').isVisible(), false, 'no demo tokens with a configured secret');
  await byId(page, 'token-input').fill(token);
  await byId(page, 'token-connect').click();
  await connected(page);
}

async function connected(page) {
  await page.locator('[data-testid="connection-status"][data-state="connected"]').waitFor();
  await byId(page, 'identity').filter({ hasText: /\S/ }).waitFor();
}

const onlineUser = (page, userId) => page.locator(`[data-testid="online-user"][data-user-id="${userId}"]`);

async function joinRoom(page, room) {
  await byId(page, 'room-input').fill(room);
  await byId(page, 'join-button').click();
  await page.locator(`[data-testid="room-item"][data-room="${room}"]`).waitFor();
  await page.locator(`[data-testid="chat-pane"][data-room="${room}"]`).waitFor({ state: 'visible' });
}

async function say(page, room, text) {
  const pane = page.locator(`[data-testid="chat-pane"][data-room="${room}"]`);
  await pane.getByTestId('chat-input').fill(text);
  await pane.getByTestId('chat-send').click();
}

const chatMessage = (page, room, text) =>
  page.locator(`[data-testid="chat-pane"][data-room="${room}"] [data-testid="chat-message"]`, { hasText: text });

async function publish(page, { kind, target = 'all', to = '', fields }) {
  await byId(page, 'admin-kind').selectOption(kind);
  await byId(page, 'admin-target').selectOption(target);
  if (target !== 'all') await byId(page, 'admin-target-value').fill(to);
  for (const [testId, value] of Object.entries(fields)) {
    const input = byId(page, testId);
    if ((await input.evaluate((node) => node.tagName)) === 'SELECT') await input.selectOption(value);
    else await input.fill(value);
  }
  const result = byId(page, 'admin-result');
  await result.evaluate((node) => {
    node.textContent = '';
  });
  await byId(page, 'admin-send').click();
  await result.filter({ hasText: /^(Sent|The|\d{3}|Request|Enter)/ }).waitFor();
  return { ok: (await result.getAttribute('data-ok')) === 'true', text: await result.textContent() };
}

const toast = (page, text) => page.locator('[data-testid="toast"]', { hasText: text });

/** Waits until the system banner shows `marker`: everything sent to this page before it has arrived. */
async function barrier(page, marker) {
  await byId(page, 'system-banner').filter({ hasText: marker }).waitFor();
}

async function screenshot(page, name) {
  await mkdir(config.outDir, { recursive: true });
  await page.screenshot({ path: path.join(config.outDir, `${name}.png`), fullPage: true });
}

async function emit(...args) {
  const { stdout } = await run(config.python, ['-m', 'realtime_gateway', 'emit', ...args], {
    cwd: config.root,
    env: { ...process.env, REDIS_URL: config.redisUrl },
    timeout: 30_000,
  });
  return stdout.trim();
}

// ---- scenarios ---------------------------------------------------------------------------

const scenarios = {
  /** Dev mode: two users get demo tokens, see each other come and go, join a room and chat. */
  async chat_presence(browser) {
    const [url] = config.urls;
    const bob = await openConsole(browser, 'bob', `${url}/console/`);
    await loginWithDevToken(bob, 'Bob');
    await onlineUser(bob, 'Bob').waitFor();

    // without the trailing slash: redirected to /console/
    const alice = await openConsole(browser, 'alice', `${url}/console`);
    assert.ok(alice.url().endsWith('/console/'), `redirected to ${alice.url()}`);
    await loginWithDevToken(alice, 'Alice');
    await onlineUser(alice, 'Bob').waitFor(); // from GET /ws/online-users
    await onlineUser(bob, 'Alice').waitFor(); // live, from a user_status envelope
    await bob.locator('[data-testid="feed-item"][data-type="user_status"]', { hasText: '"online"' }).first().waitFor();

    await joinRoom(alice, 'lobby');
    await joinRoom(bob, 'lobby');
    await say(alice, 'lobby', 'hello from alice');
    await chatMessage(bob, 'lobby', 'hello from alice').waitFor();
    await chatMessage(alice, 'lobby', 'hello from alice').waitFor();
    await say(bob, 'lobby', 'hi alice, bob here');
    await chatMessage(alice, 'lobby', 'hi alice, bob here').waitFor();
    assert.equal(await chatMessage(alice, 'lobby', 'hello from alice').getAttribute('data-from'), 'Alice');

    // a second room on one page only: its messages stay in its own pane
    await joinRoom(alice, 'side-room');
    await say(alice, 'side-room', 'only alice is here');
    await chatMessage(alice, 'side-room', 'only alice is here').waitFor();
    assert.equal(await chatMessage(alice, 'lobby', 'only alice is here').count(), 0);
    // joining a room shows its backlog (the gateway's history): Bob was not there when it was said
    await joinRoom(bob, 'side-room');
    await chatMessage(bob, 'side-room', 'only alice is here').and(bob.locator('.backlog')).waitFor();
    assert.equal(await chatMessage(bob, 'side-room', 'only alice is here').count(), 1);

    // the feed filter shows one type only
    await byId(bob, 'feed-filter').selectOption('room_message');
    const visible = bob.locator('[data-testid="feed-item"]:visible');
    await visible.first().waitFor();
    const types = await visible.evaluateAll((items) => items.map((item) => item.dataset.type));
    assert.ok(types.length >= 2, `room_message items: ${types}`);
    assert.deepEqual([...new Set(types)], ['room_message']);
    assert.ok((await bob.locator('[data-testid="feed-item"][data-type="user_status"]').count()) > 0);
    await byId(bob, 'feed-filter').selectOption('');

    // leaving a room removes its pane; the room's later messages are not shown
    await alice.locator('[data-testid="room-item"][data-room="side-room"]').getByTestId('leave-button').click();
    await alice.locator('[data-testid="chat-pane"][data-room="side-room"]').waitFor({ state: 'detached' });

    await screenshot(alice, 'chat-alice');
    await screenshot(bob, 'chat-bob');

    // Alice closes her tab: Bob sees her go offline
    await alice.context().close();
    await onlineUser(bob, 'Alice').waitFor({ state: 'detached' });
    await bob.locator('[data-testid="feed-item"][data-type="user_status"]', { hasText: '"offline"' }).first().waitFor();
    assert.equal(await onlineUser(bob, 'Bob').count(), 1);
    await screenshot(bob, 'chat-bob-after-alice-left');
  },

  /** A configured secret and API key: JWT log-in, and the admin panel's three kinds of message. */
  async admin_toast(browser) {
    const [url] = config.urls;
    const alice = await openConsole(browser, 'alice', `${url}/console/`);
    // a token signed with another secret is refused, and the page says why
    await byId(alice, 'token-input').fill(config.tokens.forged);
    await byId(alice, 'token-connect').click();
    await byId(alice, 'login-error').filter({ hasText: 'Token refused: invalid token: bad signature' }).waitFor();
    assert.equal(await byId(alice, 'dashboard').isVisible(), false);
    await loginWithJwt(alice, config.tokens.alice);
    const bob = await openConsole(browser, 'bob', `${url}/console/`);
    await loginWithJwt(bob, config.tokens.bob);
    const phone = await openConsole(browser, 'carol-phone', `${url}/console/`, PHONE);
    await loginWithJwt(phone, config.tokens.carol);
    await onlineUser(alice, 'bob').waitFor();
    await onlineUser(alice, 'carol').waitFor();
    for (const page of [alice, bob, phone]) await joinRoom(page, 'chat:room001');
    await say(bob, 'chat:room001', 'deploying v2 now');
    await chatMessage(alice, 'chat:room001', 'deploying v2 now').waitFor();
    await say(alice, 'chat:room001', 'great, I am watching the dashboards');
    await chatMessage(bob, 'chat:room001', 'watching the dashboards').waitFor();

    // the API key stays in this tab's sessionStorage, never in localStorage
    await byId(alice, 'api-key').fill(config.apiKey);
    const storage = await alice.evaluate(() => ({
      session: Object.entries(sessionStorage),
      local: Object.entries(localStorage),
    }));
    assert.ok(
      storage.session.some(([, value]) => value === config.apiKey),
      `sessionStorage: ${JSON.stringify(storage.session.map(([k]) => k))}`,
    );
    assert.deepEqual(storage.local, [], 'nothing in localStorage');

    const sent = await publish(alice, {
      kind: 'notification',
      target: 'user',
      to: 'bob',
      fields: { 'admin-title': 'Deploy finished', 'admin-body': 'v2 is live', 'admin-link': '/changelog' },
    });
    assert.ok(sent.ok, sent.text);
    await toast(bob, 'Deploy finished').waitFor();
    await byId(bob, 'unread-count').filter({ hasText: /^1$/ }).waitFor();
    assert.equal(await toast(bob, 'Deploy finished').locator('a').getAttribute('href'), `${url}/changelog`);

    // a system message to everyone after it: once a page shows it, the notification had its chance
    const system = await publish(alice, {
      kind: 'system',
      fields: { 'admin-message': 'Maintenance at 22:00', 'admin-level': 'warning' },
    });
    assert.ok(system.ok, system.text);
    for (const page of [alice, bob, phone]) await barrier(page, 'Maintenance at 22:00');
    for (const page of [alice, phone]) {
      assert.equal(await byId(page, 'toast').count(), 0, 'the notification reached only bob');
      assert.equal(await byId(page, 'unread-count').textContent(), '0');
    }
    assert.equal(await byId(bob, 'system-banner').getAttribute('data-level'), 'warning');

    const update = await publish(alice, {
      kind: 'data_update',
      target: 'room',
      to: 'chat:room001',
      fields: { 'admin-entity': 'user', 'admin-action': 'create', 'admin-id': '123', 'admin-data': '{"username": "new_user"}' },
    });
    assert.ok(update.ok, update.text);
    for (const page of [alice, bob, phone]) {
      await page.locator('[data-testid="feed-item"][data-type="data_update"]', { hasText: 'new_user' }).waitFor();
    }

    // a notification to everyone reaches every page, the phone included
    const everyone = await publish(alice, {
      kind: 'notification',
      fields: { 'admin-title': 'Welcome to v2', 'admin-body': 'Read what changed', 'admin-link': '' },
    });
    assert.ok(everyone.ok, everyone.text);
    for (const page of [alice, bob, phone]) await toast(page, 'Welcome to v2').waitFor();
    await byId(bob, 'unread-count').filter({ hasText: /^2$/ }).waitFor();

    await screenshot(bob, 'admin-bob-laptop');
    await screenshot(alice, 'admin-alice-laptop');
    await screenshot(phone, 'admin-carol-phone');

    // opening the notifications clears the counter; the list keeps both
    await byId(bob, 'notifications-button').click();
    await byId(bob, 'unread-count').filter({ hasText: /^0$/ }).waitFor();
    assert.equal(await byId(bob, 'notification-item').count(), 2);

    // a wrong key is refused and said so
    await byId(alice, 'api-key').fill('not-the-key');
    const refused = await publish(alice, { kind: 'system', fields: { 'admin-message': 'never delivered' } });
    assert.equal(refused.ok, false);
    assert.match(refused.text, /401/);

    // a reload keeps the tab's session (token and API key) and reconnects
    await byId(alice, 'api-key').fill(config.apiKey);
    await alice.reload();
    await connected(alice);
    assert.equal(await byId(alice, 'api-key').inputValue(), config.apiKey);
    await byId(alice, 'logout').click();
    await byId(alice, 'login-panel').waitFor({ state: 'visible' });
    assert.equal(await alice.evaluate(() => sessionStorage.length), 1, 'log-out forgets the token, keeps the API key');
  },

  /** Clustered: a notification from `realtime-gateway emit` reaches only its user, on another node. */
  async cli_toast(browser) {
    const [url1, url2] = config.urls;
    const alice = await openConsole(browser, 'alice', `${url1}/console/`);
    await loginWithJwt(alice, config.tokens.alice);
    const bob = await openConsole(browser, 'bob', `${url2}/console/`);
    await loginWithJwt(bob, config.tokens.bob);
    await onlineUser(alice, 'bob').waitFor(); // across nodes, through Redis
    await onlineUser(bob, 'alice').waitFor();

    const id = await emit('notification', '--user', 'bob', '--title', 'From the CLI', '--body', 'realtime-gateway emit');
    assert.match(id, /^\S+$/);
    await toast(bob, 'From the CLI').waitFor();
    await byId(bob, 'unread-count').filter({ hasText: /^1$/ }).waitFor();
    assert.equal(await bob.locator(`[data-testid="toast"][data-id="${id}"]`).count(), 1, 'the toast is the emitted envelope');

    await emit('system', 'cli barrier', '--level', 'info');
    await barrier(alice, 'cli barrier');
    await barrier(bob, 'cli barrier');
    assert.equal(await byId(alice, 'toast').count(), 0, 'the notification reached only bob');
    assert.equal(await byId(alice, 'unread-count').textContent(), '0');

    await screenshot(alice, 'cli-alice');
    await screenshot(bob, 'cli-bob');
  },

  /** The gateway restarts under an open console: it reconnects, re-joins its room and refreshes who is online. */
  async reconnect(browser) {
    const [url] = config.urls;
    const alice = await openConsole(browser, 'alice', `${url}/console/`);
    await loginWithJwt(alice, config.tokens.alice);
    await joinRoom(alice, 'ops');
    await say(alice, 'ops', 'before the restart');
    await chatMessage(alice, 'ops', 'before the restart').waitFor();

    const states = [];
    await alice.exposeFunction('recordState', (state) => states.push(state));
    await alice.evaluate(() => {
      const status = document.querySelector('[data-testid="connection-status"]');
      new MutationObserver(() => window.recordState(status.dataset.state)).observe(status, { attributes: true });
    });
    expectedErrors.push(/^WebSocket connection to .* failed/);
    assert.equal(await askDriver('restart'), 'restarted');
    await connected(alice);
    assert.ok(states.includes('reconnecting'), `states seen: ${states}`);
    await onlineUser(alice, 'alice').waitFor();
    // the room was joined again: a message to it comes back
    await say(alice, 'ops', 'after the restart');
    await chatMessage(alice, 'ops', 'after the restart').waitFor();
    assert.equal(await chatMessage(alice, 'ops', 'before the restart').count(), 1, 'the chat history stays');
    await screenshot(alice, 'reconnect-alice');
  },

  /** Two nodes: the operator page shows both, their live charts, the rooms, a user's connections
   * on both nodes, and disconnects that user everywhere. */
  async operator(browser) {
    const [url1, url2] = config.urls;
    const [pid1, pid2] = config.pids;
    const { alice, bob, carol } = config.tokens;
    const talker = await socketClient(url1, alice, ['websocket'], ['lobby', 'ops:alerts']);
    const pinged = await socketClient(url2, bob, ['polling'], ['lobby']);
    const carolHere = await socketClient(url1, carol, ['websocket'], ['support']);
    const carolThere = await socketClient(url2, carol, ['polling'], ['support', 'lobby']);
    // traffic for the messages-per-second lines: node 1 alternates 10 and 20 messages/s every 4 s,
    // node 2 answers a ping every 250 ms
    let ticks = 0;
    const traffic = setInterval(() => {
      ticks += 1;
      const burst = Math.floor(ticks / 40) % 2 === 1 ? 2 : 1;
      for (let n = 0; n < burst; n += 1) talker.emit('room_message', { room: 'lobby', text: 'tick' });
    }, 100);
    const pinger = setInterval(() => pinged.emit('ping', {}), 250);

    try {
      const page = await openConsole(browser, 'operator', `${url1}/console/ops`, { width: 1400, height: 1000 });
      await byId(page, 'ops-key').fill('not-the-key');
      await byId(page, 'ops-key-submit').click();
      await byId(page, 'ops-login-error').filter({ hasText: 'refused (401)' }).waitFor();
      assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused key is not kept');
      await byId(page, 'ops-key').fill(config.apiKey);
      await byId(page, 'ops-key-submit').click();
      await page.locator('[data-testid="ops-status"][data-state="connected"]').waitFor();
      await byId(page, 'ops-scope').filter({ hasText: '2 nodes · cluster' }).waitFor();

      // both nodes, each with its own figures
      for (const [pid, clients, rooms] of [
        [pid1, '2', '3'],
        [pid2, '2', '2'],
      ]) {
        const row = nodeRow(page, pid);
        await row.waitFor();
        assert.equal(await cell(row, 'clients'), clients, `connections of node ${pid}`);
        assert.equal(await cell(row, 'rooms'), rooms, `rooms of node ${pid}`);
        assert.equal(await cell(row, 'online_users'), '2');
      }
      assert.match(await cell(nodeRow(page, pid2), 'transports'), /socket\.io 2/);
      // live charts: a line per node, growing with each poll; node 1 carries the traffic
      const node1 = await nodeRow(page, pid1).getAttribute('data-node');
      const node2 = await nodeRow(page, pid2).getAttribute('data-node');
      const line = (chart, node) => page.locator(`[data-testid="${chart}"] polyline[data-node="${node}"]`);
      await page.waitForFunction(
        (node) => Number(document.querySelector(`[data-testid="chart-messages"] polyline[data-node="${node}"]`)?.dataset.points) >= 3,
        node1,
        { timeout: 20_000 },
      );
      assert.ok(Number(await line('chart-messages', node1).getAttribute('data-last')) >= 3, 'about 10 messages/s on node 1');
      assert.equal(await line('chart-connections', node2).getAttribute('data-last'), '2');
      assert.equal(await line('chart-rooms', node1).getAttribute('data-last'), '3');
      assert.equal(await page.locator('[data-testid="chart-legend"] li').count(), 2);

      // rooms, cluster-wide
      const room = (name) => page.locator(`[data-testid="room-row"][data-room="${name}"]`);
      await room('lobby').waitFor();
      assert.equal(await cell(room('lobby'), 'members'), '3');
      assert.equal(await cell(room('lobby'), 'nodes'), '2');
      assert.equal(await cell(room('support'), 'members'), '2');
      assert.equal(await cell(room('ops:alerts'), 'members'), '1');
      assert.deepEqual(
        await page.locator('[data-testid="room-row"]').evaluateAll((rows) => rows.map((row) => row.dataset.room)),
        ['lobby', 'support', 'ops:alerts'],
        'largest first',
      );

      // a user's connections on both nodes
      await byId(page, 'user-input').fill('carol');
      await byId(page, 'user-lookup').click();
      const connections = page.locator('[data-testid="user-connection"]');
      await page.locator('[data-testid="user-result"][data-online="true"]').waitFor();
      assert.equal(await connections.count(), 2);
      const shown = await connections.evaluateAll((rows) =>
        rows.map((row) => [...row.querySelectorAll('td')].map((td) => td.textContent)),
      );
      assert.deepEqual(shown.map((row) => row[0]).sort(), [`${hostname()}:${pid1}`, `${hostname()}:${pid2}`].sort());
      assert.deepEqual(shown.map((row) => row[1]).sort(), ['socket.io (polling)', 'socket.io (websocket)']);
      assert.ok(shown.every((row) => / ago\)$/.test(row[2])), `since: ${shown.map((row) => row[2])}`);
      assert.deepEqual(shown.map((row) => row[3]).sort(), ['lobby, support', 'support']);
      await byId(page, 'user-name').filter({ hasText: 'Carol (carol)' }).waitFor();

      // more clients arrive on node 2, one per poll: the charts show them come in
      const arrivals = [];
      for (const [n, token] of config.tokens.extra.entries()) {
        arrivals.push(await socketClient(url2, token, ['websocket'], ['lobby', `team:${n % 2}`]));
        await nodeRow(page, pid2).locator('[data-field="clients"]', { hasText: new RegExp(`^${3 + n}$`) }).waitFor();
      }
      await page.waitForFunction(
        () => Number(document.querySelector('[data-testid="chart-connections"] polyline')?.dataset.points) >= 12,
        null,
        { timeout: 40_000 },
      );
      await screenshot(page, 'operator');
      const extra = arrivals.length;

      // disconnect carol everywhere: two clicks (the first arms the button)
      const gone = [carolHere, carolThere].map(
        (socket) => new Promise((resolve) => socket.once('disconnect', (reason) => resolve(reason))),
      );
      await byId(page, 'user-disconnect').click();
      await page.locator('[data-testid="user-disconnect"][data-armed="true"]').waitFor();
      await byId(page, 'user-disconnect').click();
      await byId(page, 'user-message').filter({ hasText: 'Disconnected carol' }).waitFor();
      const reasons = await Promise.race([
        Promise.all(gone),
        new Promise((_, reject) => setTimeout(() => reject(new Error('carol was not disconnected')), WAIT)),
      ]);
      assert.deepEqual(reasons, ['io server disconnect', 'io server disconnect']);
      await page.locator('[data-testid="user-result"][data-online="false"]').waitFor({ timeout: 15_000 });
      assert.equal(await connections.count(), 0);
      await byId(page, 'user-disconnect').waitFor({ state: 'hidden' });
      await byId(page, 'ops-scope').filter({ hasText: '2 nodes' }).waitFor();
      await nodeRow(page, pid1).locator('[data-field="clients"]', { hasText: /^1$/ }).waitFor();
      await nodeRow(page, pid2).locator('[data-field="clients"]', { hasText: new RegExp(`^${1 + extra}$`) }).waitFor();
      await screenshot(page, 'operator-after-disconnect');

      // the console links here, and the key typed here is the console's too (same tab)
      await byId(page, 'console-link').click();
      await page.locator('body[data-ready="true"]').waitFor();
      assert.equal(await byId(page, 'api-key').inputValue(), config.apiKey);
      await byId(page, 'operator-link').click();
      await page.locator('[data-testid="ops-status"][data-state="connected"]').waitFor();
      await byId(page, 'ops-logout').click();
      await byId(page, 'ops-login').waitFor({ state: 'visible' });
      assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'locking forgets the key');

      // the ops token shows the same cluster, without the power to disconnect
      await byId(page, 'ops-key').fill(config.opsToken);
      await byId(page, 'ops-key-submit').click();
      await byId(page, 'ops-scope').filter({ hasText: '2 nodes · cluster' }).waitFor();
      await nodeRow(page, pid2).waitFor();
      await byId(page, 'user-input').fill('bob');
      await byId(page, 'user-lookup').click();
      await page.locator('[data-testid="user-result"][data-online="true"]').waitFor();
      await byId(page, 'user-disconnect').click();
      await byId(page, 'user-disconnect').click();
      await byId(page, 'user-message').filter({ hasText: 'needs the API key' }).waitFor();
      assert.ok(pinged.connected, 'bob is still connected');
    } finally {
      clearInterval(traffic);
      clearInterval(pinger);
      for (const socket of sockets) socket.disconnect();
    }
  },
};

/** A Socket.IO client of the test itself (not a page): connected, in its rooms, never reconnecting. */
async function socketClient(url, token, transports, rooms) {
  const socket = io(url, { auth: { token }, transports, reconnection: false, forceNew: true });
  sockets.push(socket);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no connection to ${url} within ${WAIT} ms`)), WAIT);
    socket.once('welcome', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('connect_error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
  for (const room of rooms) {
    const ack = await socket.timeout(WAIT).emitWithAck('join_room', room);
    assert.equal(ack.ok, true, JSON.stringify(ack));
  }
  return socket;
}

const sockets = [];

/** The node row of the operator page for the gateway process `pid` (node names are host:pid). */
const nodeRow = (page, pid) => page.locator('[data-testid="node-row"]', { hasText: `${hostname()}:${pid}` });

async function cell(locator, field) {
  return (await locator.locator(`[data-field="${field}"]`).textContent()).trim();
}

/** Asks the test driver (tests/test_console.py) for something, and waits for its answer on stdin. */
async function askDriver(request, timeoutMs = 60_000) {
  const answer = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer to ${request} within ${timeoutMs} ms`)), timeoutMs);
    process.stdin.setEncoding('utf8');
    process.stdin.once('data', (line) => {
      clearTimeout(timer);
      process.stdin.pause();
      resolve(line.trim());
    });
  });
  process.stdout.write(`DRIVER ${request}\n`);
  return answer;
}

// ---- runner ------------------------------------------------------------------------------

const name = process.argv[2];
const scenario = scenarios[name];
if (!scenario) {
  console.error(`usage: console.spec.mjs <${Object.keys(scenarios).join('|')}>`);
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: config.chromium ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  timeout: 30_000,
});
let failed = false;
const started = performance.now();
try {
  await scenario(browser);
  assert.deepEqual(problems, [], 'no errors in the pages');
} catch (error) {
  failed = true;
  console.error(`scenario ${name} failed: ${error.stack ?? error}`);
  if (problems.length) console.error(`page problems:\n  ${problems.join('\n  ')}`);
  for (const { name: page, page: handle } of pages) {
    if (!handle.isClosed()) await screenshot(handle, `failed-${name}-${page}`).catch(() => {});
  }
} finally {
  await browser.close();
}
console.log(`scenario ${name}: ${failed ? 'FAILED' : 'passed'} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
process.exit(failed ? 1 : 0);
