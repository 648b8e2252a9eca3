// The packed @realtime-gateway/client in headless Chromium, run by tests/test_client_package.py:
//
//   node tests/browser/client_package.spec.mjs
//
// CLIENT_PACKAGE_TEST (JSON): {chromium, gateway, token, appDir, plainPage, bundle, outDir}. Two
// pages, served by a static file server of this script on its own port: another origin than the
// gateway's, as an application usually is, so the connection crosses origins as in production:
//   /?gateway=...&token=...            the fresh Vite app's build (appDir), importing the package
//   /plain.html?gateway=...&token=...  a page without a bundler, importing the package's browser
//                                      bundle (`bundle`, served as /realtime-client.js)
// Exits 0 when both connected and saw their welcome, 1 with the reason (and screenshots).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(new URL('../../console/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const config = JSON.parse(process.env.CLIENT_PACKAGE_TEST ?? '{}');
const WAIT = 15_000;
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };

/** The file a request for the app's origin gets, or null (404). */
function fileFor(pathname) {
  if (pathname === '/plain.html') return config.plainPage;
  if (pathname === '/realtime-client.js') return config.bundle;
  const relative = pathname === '/' ? 'index.html' : pathname.slice(1);
  const resolved = path.resolve(config.appDir, relative);
  return resolved.startsWith(path.resolve(config.appDir) + path.sep) ? resolved : null;
}

/** A static file server for the pages (what `vite preview` or any web server would be). */
async function serveFiles() {
  const server = createServer(async (request, response) => {
    const file = fileFor(new URL(request.url, 'http://localhost').pathname);
    const body = file && (await readFile(file).catch(() => null));
    if (!body) {
      response.writeHead(404).end('not found');
      return;
    }
    response.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream' }).end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

async function open(browser, name, url, problems) {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (error) => problems.push(`${name}: uncaught ${error.stack ?? error}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`${name}: console error: ${message.text()}`);
  });
  await page.goto(`${url}?${new URLSearchParams({ gateway: config.gateway, token: config.token })}`);
  return page;
}

/** Waits until the page set `data-<key>` on its body (or reported an error), and returns it. */
async function bodyData(page, key) {
  await page.waitForFunction(
    (name) => document.body.dataset[name] !== undefined || document.body.dataset.error !== undefined,
    key,
    { timeout: WAIT },
  );
  const data = await page.evaluate(() => ({ ...document.body.dataset }));
  assert.equal(data.error, undefined, `the page failed: ${data.error}`);
  return data;
}

const files = await serveFiles();
const origin = `http://127.0.0.1:${files.address().port}`;
const browser = await chromium.launch({
  executablePath: config.chromium ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  timeout: 30_000,
});
const problems = [];
const pages = [];
let failed = false;
try {
  const app = await open(browser, 'vite-app', `${origin}/`, problems);
  pages.push(['vite-app', app]);
  const plain = await open(browser, 'plain-page', `${origin}/plain.html`, problems);
  pages.push(['plain-page', plain]);

  const built = await bodyData(app, 'states');
  assert.equal(JSON.parse(built.welcome).user_id, 'vite-user');
  assert.equal(built.states, 'connecting,connected');
  assert.equal(built.rtt, 'true', 'ping resolved with a round-trip time');
  assert.equal(built.refused, '403', "joining another user's room is refused with a ServerError");

  const bare = await bodyData(plain, 'joined');
  assert.equal(JSON.parse(bare.welcome).user_id, 'vite-user');
  assert.equal(bare.joined, 'plain-page');
  assert.deepEqual(problems, [], 'no errors in the pages');
} catch (error) {
  failed = true;
  console.error(`client package scenario failed: ${error.stack ?? error}`);
  if (problems.length) console.error(`page problems:\n  ${problems.join('\n  ')}`);
  await mkdir(config.outDir, { recursive: true });
  for (const [name, page] of pages) {
    await page.screenshot({ path: path.join(config.outDir, `failed-${name}.png`) }).catch(() => {});
  }
} finally {
  await browser.close();
  files.close();
}
process.exit(failed ? 1 : 0);
