/**
 * The operator page (`/console/ops`): the cluster's nodes with live charts of their connections,
 * rooms and messages per second, the rooms with their members, and a user lookup with "disconnect
 * this user".
 *
 * It reads the operator API (`GET /api/ops/nodes`, `/api/ops/rooms`, `/api/ops/users/{id}`,
 * cluster-wide, with the API key or the ops token) every `POLL_MS`, and disconnects through the cluster-wide
 * `POST /api/disconnect {"user": id}`. Messages per second come from two successive answers'
 * counters and node clocks. No socket of its own: an operator page changes nothing it shows.
 */
import { renderChart, type Series } from './chart.js';
import { byTestId, errorMessage, h, isRecord } from './dom.js';
import { API_KEY_KEY, gatewayUrl } from './session.js';

const POLL_MS = 2000;
const SAMPLES = 60; // two minutes of history at POLL_MS
const ROOMS_SHOWN = 50;
const ARM_MS = 5000;
const COLORS = ['#2f6fed', '#1a8f4c', '#b7791f', '#c53030', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];

interface OperatorNode {
  id: string;
  name: string;
  clients: number;
  online_users: number;
  rooms: number;
  transports: Record<string, number>;
  uptime: number;
  messages_received: number;
  messages_sent: number;
  time: number;
}

interface Gathered {
  scope: 'cluster' | 'node';
  node: string;
  expected: number;
  missing: number;
  error?: string;
}

interface NodesAnswer extends Gathered {
  nodes: OperatorNode[];
}

interface RoomsAnswer extends Gathered {
  total: number;
  truncated: boolean;
  rooms: Array<{ room: string; members: number; nodes: number }>;
}

interface UserAnswer extends Gathered {
  user_id: string;
  user_name: string | null;
  online: boolean;
  connections: Array<{
    node: string;
    node_name: string;
    sid: string;
    transport: string;
    engineio: string | null;
    since: number;
    rooms: string[];
  }>;
}

/** A node's history for the charts: one sample per poll, null where it did not answer. */
interface NodeHistory {
  name: string;
  color: string;
  clients: Array<number | null>;
  rooms: Array<number | null>;
  rate: Array<number | null>;
  /** the previous answer's message total and node clock, for the rate */
  previous: { total: number; time: number } | null;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

// ---- state -------------------------------------------------------------------------------

let apiKey = '';
let timer: ReturnType<typeof setTimeout> | undefined;
let inFlight = false;
let polling = 0; // bumped on sign-in and sign-out: an answer of an older session is dropped
const history = new Map<string, NodeHistory>();
let lookedUp: string | null = null;
let armedTimer: ReturnType<typeof setTimeout> | undefined;

const ui = {
  status: byTestId('ops-status'),
  scope: byTestId('ops-scope'),
  logout: byTestId<HTMLButtonElement>('ops-logout'),
  login: byTestId('ops-login'),
  keyForm: byTestId<HTMLFormElement>('ops-key-form'),
  key: byTestId<HTMLInputElement>('ops-key'),
  loginError: byTestId('ops-login-error'),
  dashboard: byTestId('ops-dashboard'),
  warning: byTestId('ops-warning'),
  nodeCount: byTestId('node-count'),
  nodeRows: byTestId('node-rows'),
  charts: {
    clients: byTestId('chart-connections'),
    rooms: byTestId('chart-rooms'),
    rate: byTestId('chart-messages'),
  },
  legend: byTestId('chart-legend'),
  roomTotal: byTestId('room-total'),
  roomsPrefix: byTestId<HTMLInputElement>('rooms-prefix'),
  roomRows: byTestId('room-rows'),
  roomsMore: byTestId('rooms-more'),
  userForm: byTestId<HTMLFormElement>('user-form'),
  userInput: byTestId<HTMLInputElement>('user-input'),
  userResult: byTestId('user-result'),
  userName: byTestId('user-name'),
  userSummary: byTestId('user-summary'),
  userConnections: byTestId('user-connections'),
  userTable: byTestId('user-table'),
  disconnect: byTestId<HTMLButtonElement>('user-disconnect'),
  userMessage: byTestId('user-message'),
};

// ---- the operator API ----------------------------------------------------------------------

async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(gatewayUrl(path), {
    ...init,
    cache: 'no-store',
    headers: { Authorization: `Bearer ${apiKey}`, ...(init.body ? { 'Content-Type': 'application/json' } : {}) },
  });
  const body: unknown = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, errorMessage(body) ?? response.statusText);
  return body as T;
}

function signIn(key: string): void {
  apiKey = key.trim();
  if (!apiKey) return;
  sessionStorage.setItem(API_KEY_KEY, apiKey);
  polling += 1;
  clearTimeout(timer);
  history.clear();
  ui.login.hidden = true;
  ui.dashboard.hidden = false;
  ui.logout.hidden = false;
  ui.loginError.textContent = '';
  setStatus('connecting', 'loading…');
  void poll(polling);
}

function signOut(reason: string): void {
  polling += 1;
  clearTimeout(timer);
  apiKey = '';
  sessionStorage.removeItem(API_KEY_KEY);
  lookedUp = null;
  ui.userResult.hidden = true;
  ui.userMessage.textContent = '';
  ui.dashboard.hidden = true;
  ui.logout.hidden = true;
  ui.login.hidden = false;
  ui.loginError.textContent = reason;
  ui.scope.textContent = '';
  setStatus('disconnected', 'not signed in');
}

function setStatus(state: string, label: string): void {
  ui.status.dataset['state'] = state;
  ui.status.textContent = label;
}

/** Refusals that no retry can fix end the session; anything else is shown and retried. */
function failed(session: number, error: unknown): boolean {
  if (session !== polling) return true;
  if (error instanceof ApiError && error.status === 401) {
    signOut('The API key or ops token was refused (401).');
    return true;
  }
  if (error instanceof ApiError && error.status === 403) {
    signOut(`The operator API is off on this gateway: ${error.message} (403).`);
    return true;
  }
  setStatus('reconnecting', 'retrying');
  ui.warning.textContent = `Could not read the cluster: ${error instanceof Error ? error.message : String(error)}`;
  ui.warning.hidden = false;
  return false;
}

async function poll(session: number): Promise<void> {
  inFlight = true;
  try {
    const prefix = encodeURIComponent(ui.roomsPrefix.value.trim());
    const [nodes, rooms] = await Promise.all([
      api<NodesAnswer>('api/ops/nodes'),
      api<RoomsAnswer>(`api/ops/rooms?limit=${ROOMS_SHOWN}&prefix=${prefix}`),
    ]);
    if (session !== polling) return;
    showNodes(nodes);
    showRooms(rooms);
    if (lookedUp !== null) await lookUp(lookedUp, session);
    setStatus('connected', 'live');
  } catch (error) {
    if (failed(session, error)) return;
  } finally {
    inFlight = false;
  }
  if (session === polling) timer = setTimeout(() => void poll(session), POLL_MS);
}

/** Polls at once (a new room filter), unless a poll is under way: it will see the change. */
function pollNow(): void {
  if (inFlight) return;
  clearTimeout(timer);
  void poll(polling);
}

// ---- nodes and charts ----------------------------------------------------------------------

function showNodes(answer: NodesAnswer): void {
  const problems = [
    answer.error ? `Only this node's figures: ${answer.error}` : '',
    answer.missing > 0 ? `${answer.missing} of ${answer.expected} nodes did not answer in time.` : '',
  ].filter(Boolean);
  ui.warning.textContent = problems.join(' ');
  ui.warning.hidden = problems.length === 0;
  ui.scope.textContent = `${answer.nodes.length} node${answer.nodes.length === 1 ? '' : 's'} · ${answer.scope}`;
  ui.nodeCount.textContent = String(answer.nodes.length);

  const seen = new Set<string>();
  for (const node of answer.nodes) {
    seen.add(node.id);
    let line = history.get(node.id);
    if (!line) {
      const length = history.values().next().value?.clients.length ?? 0;
      line = {
        name: node.name,
        color: COLORS[history.size % COLORS.length] ?? '#4b5563',
        clients: Array<number | null>(length).fill(null),
        rooms: Array<number | null>(length).fill(null),
        rate: Array<number | null>(length).fill(null),
        previous: null,
      };
      history.set(node.id, line);
    }
    const total = node.messages_received + node.messages_sent;
    const elapsed = line.previous ? node.time - line.previous.time : 0;
    const rate = line.previous && elapsed > 0 ? Math.max(0, (total - line.previous.total) / elapsed) : null;
    line.previous = { total, time: node.time };
    push(line.clients, node.clients);
    push(line.rooms, node.rooms);
    push(line.rate, rate === null ? null : Math.round(rate * 10) / 10);
  }
  for (const [id, line] of history) {
    if (seen.has(id)) continue;
    push(line.clients, null);
    push(line.rooms, null);
    push(line.rate, null);
    line.previous = null;
    if (line.clients.every((value) => value === null)) history.delete(id); // gone for the whole window
  }

  ui.nodeRows.replaceChildren(...answer.nodes.map((node) => nodeRow(node, answer.node)));
  const series = (metric: 'clients' | 'rooms' | 'rate'): Series[] =>
    [...history].map(([id, line]) => ({ id, color: line.color, values: line[metric] }));
  renderChart(ui.charts.clients, series('clients'), SAMPLES);
  renderChart(ui.charts.rooms, series('rooms'), SAMPLES);
  renderChart(ui.charts.rate, series('rate'), SAMPLES, '/s');
  ui.legend.replaceChildren(
    ...[...history].map(([id, line]) =>
      h('li', { attrs: { 'data-node': id } }, swatch(line.color), line.name),
    ),
  );
}

function push(values: Array<number | null>, value: number | null): void {
  values.push(value);
  if (values.length > SAMPLES) values.shift();
}

function swatch(color: string): SVGSVGElement {
  const icon = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  icon.setAttribute('viewBox', '0 0 10 10');
  icon.setAttribute('class', 'swatch');
  const dot = document.createElementNS('http://www.w3.org/2000/svg', 'circle');
  for (const [name, value] of Object.entries({ cx: '5', cy: '5', r: '5', fill: color })) dot.setAttribute(name, value);
  icon.append(dot);
  return icon;
}

function nodeRow(node: OperatorNode, asked: string): HTMLTableRowElement {
  const rate = history.get(node.id)?.rate.at(-1);
  const cell = (field: string, value: string): HTMLTableCellElement => h('td', { text: value, attrs: { 'data-field': field } });
  return h(
    'tr',
    { attrs: { 'data-testid': 'node-row', 'data-node': node.id } },
    h(
      'td',
      { attrs: { 'data-field': 'name' } },
      swatch(history.get(node.id)?.color ?? '#4b5563'),
      node.name,
      node.id === asked ? h('span', { className: 'you', text: ' (this one)' }) : null,
      h('br'),
      h('span', { className: 'muted mono', text: node.id }),
    ),
    cell('clients', String(node.clients)),
    cell('online_users', String(node.online_users)),
    cell('rooms', String(node.rooms)),
    cell('rate', rate === null || rate === undefined ? '–' : rate.toFixed(1)),
    cell(
      'transports',
      Object.entries(node.transports)
        .map(([transport, count]) => `${transport} ${count}`)
        .join(', ') || '–',
    ),
    cell('uptime', duration(node.uptime)),
  );
}

function duration(seconds: number): string {
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours} h ${minutes % 60} min` : `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

// ---- rooms -----------------------------------------------------------------------------------

function showRooms(answer: RoomsAnswer): void {
  ui.roomTotal.textContent = String(answer.total);
  ui.roomRows.replaceChildren(
    ...answer.rooms.map((room) =>
      h(
        'tr',
        { attrs: { 'data-testid': 'room-row', 'data-room': room.room } },
        h('td', { className: 'mono', text: room.room }),
        h('td', { text: String(room.members), attrs: { 'data-field': 'members' } }),
        h('td', { text: String(room.nodes), attrs: { 'data-field': 'nodes' } }),
      ),
    ),
  );
  ui.roomsMore.hidden = !answer.truncated;
  ui.roomsMore.textContent = `Showing the ${answer.rooms.length} largest of ${answer.total}.`;
}

// ---- user lookup and disconnect --------------------------------------------------------------

async function lookUp(userId: string, session: number): Promise<void> {
  const answer = await api<UserAnswer>(`api/ops/users/${encodeURIComponent(userId)}`);
  if (session !== polling || lookedUp !== userId) return;
  ui.userResult.hidden = false;
  ui.userResult.dataset['userId'] = userId;
  ui.userResult.dataset['online'] = String(answer.online);
  ui.userName.textContent = answer.user_name && answer.user_name !== userId ? `${answer.user_name} (${userId})` : userId;
  const count = answer.connections.length;
  ui.userSummary.textContent = count ? `${count} connection${count === 1 ? '' : 's'}` : 'offline: no connection on any node';
  ui.userConnections.replaceChildren(
    ...answer.connections.map((connection) =>
      h(
        'tr',
        { attrs: { 'data-testid': 'user-connection', 'data-node': connection.node, 'data-sid': connection.sid } },
        h('td', { text: connection.node_name, attrs: { 'data-field': 'node' } }),
        h('td', {
          text: connection.engineio ? `${connection.transport} (${connection.engineio})` : connection.transport,
          attrs: { 'data-field': 'transport' },
        }),
        h('td', { text: since(connection.since), attrs: { 'data-field': 'since' } }),
        h('td', { className: 'mono', text: connection.rooms.join(', ') || '–', attrs: { 'data-field': 'rooms' } }),
      ),
    ),
  );
  ui.disconnect.hidden = count === 0;
  ui.userTable.hidden = count === 0;
}

function since(timestamp: number): string {
  const date = new Date(timestamp * 1000);
  const clock = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  return `${clock} (${duration(Math.max(0, Date.now() / 1000 - timestamp))} ago)`;
}

function showUserMessage(ok: boolean, message: string): void {
  ui.userMessage.dataset['ok'] = String(ok);
  ui.userMessage.textContent = message;
}

function disarm(): void {
  clearTimeout(armedTimer);
  delete ui.disconnect.dataset['armed'];
  ui.disconnect.textContent = 'Disconnect this user';
}

/** First click arms the button (it says what it will do), the second disconnects: no modal
 * dialog, and no disconnect from a stray click. */
async function disconnectClicked(): Promise<void> {
  const userId = lookedUp;
  if (userId === null) return;
  if (ui.disconnect.dataset['armed'] !== 'true') {
    ui.disconnect.dataset['armed'] = 'true';
    ui.disconnect.textContent = `Click again to disconnect ${userId} on every node`;
    armedTimer = setTimeout(disarm, ARM_MS);
    return;
  }
  disarm();
  try {
    const answer = await api<unknown>('api/disconnect', { method: 'POST', body: JSON.stringify({ user: userId }) });
    showUserMessage(true, `Disconnected ${userId}${describeDisconnect(answer)}.`);
    await lookUp(userId, polling);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      // the membership API, /api/disconnect included, exists only on a gateway with an API key
      showUserMessage(false, 'Disconnecting needs the gateway to have an API_KEY (POST /api/disconnect answered 404).');
    } else if (error instanceof ApiError && error.status === 401) {
      showUserMessage(false, 'Disconnecting needs the API key: an ops token can only look (401).');
    } else if (error instanceof ApiError) {
      showUserMessage(false, `${error.status}: ${error.message}`);
    } else {
      showUserMessage(false, `Request failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

function describeDisconnect(answer: unknown): string {
  if (!isRecord(answer)) return '';
  const count = answer['disconnected'] ?? answer['connections'] ?? answer['count'];
  return typeof count === 'number' ? ` (${count} connection${count === 1 ? '' : 's'})` : '';
}

// ---- wiring ------------------------------------------------------------------------------

function start(): void {
  ui.keyForm.addEventListener('submit', (event) => {
    event.preventDefault();
    signIn(ui.key.value);
  });
  ui.logout.addEventListener('click', () => signOut(''));
  ui.userForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const userId = ui.userInput.value.trim();
    if (!userId) return;
    lookedUp = userId;
    disarm();
    showUserMessage(true, '');
    const session = polling;
    lookUp(userId, session).catch((error: unknown) => {
      if (!failed(session, error)) showUserMessage(false, error instanceof Error ? error.message : String(error));
    });
  });
  ui.disconnect.addEventListener('click', () => void disconnectClicked());
  ui.roomsPrefix.addEventListener('change', pollNow);
  const saved = sessionStorage.getItem(API_KEY_KEY);
  if (saved) signIn(saved);
  document.body.dataset['ready'] = 'true';
}

start();
