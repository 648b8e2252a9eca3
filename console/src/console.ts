/**
 * The gateway's live console: one Socket.IO connection (the frontend-adapter's RealtimeClient)
 * as the user whose token was given, and panels for what flows through it.
 *
 * Every URL is relative to the page (served at `<gateway>/console/`), so the console also works
 * behind a proxy that serves the gateway under a path prefix.
 */
import { AuthError, RealtimeClient, ServerError, type ConnectionState, type Envelope } from '../../frontend-adapter/src/index.js';

import { byTestId, clock, errorMessage, h, isRecord, preview, safeUrl, text } from './dom.js';
import { API_KEY_KEY, consoleBase, gatewayBase, gatewayUrl } from './session.js';

const TOKEN_KEY = 'realtime-gateway-console:token';
const FEED_LIMIT = 300;
const CHAT_LIMIT = 500;
/** Messages of a room's history shown when it is joined (the gateway answers at most 100). */
const BACKLOG = 100;
const TOAST_MS = 8000;
const TOASTS_SHOWN = 4;

interface Config {
  dev_tokens: boolean;
  publish_api: boolean;
}

interface RoomView {
  tab: HTMLButtonElement;
  badge: HTMLSpanElement;
  pane: HTMLElement;
  messages: HTMLOListElement;
  unread: number;
  /** Ids shown in `messages`: a backlog entry that also arrived live is shown once. */
  shown: Set<string>;
}

// ---- state -------------------------------------------------------------------------------

let client: RealtimeClient | null = null;
let token = '';
let me: { userId: string; username: string } | null = null;
let config: Config = { dev_tokens: false, publish_api: false };
/** user id -> display name */
const online = new Map<string, string>();
/** user_status changes seen while the online list is being fetched, replayed over its answer. */
let statusBuffer: Array<{ userId: string; name: string; online: boolean }> | null = null;
const rooms = new Map<string, RoomView>();
let activeRoom: string | null = null;
const feedTypes = new Map<string, number>();
let unread = 0;

// ---- elements ----------------------------------------------------------------------------

const ui = {
  status: byTestId('connection-status'),
  identity: byTestId('identity'),
  logout: byTestId<HTMLButtonElement>('logout'),
  bell: byTestId<HTMLButtonElement>('notifications-button'),
  unread: byTestId('unread-count'),
  drawer: byTestId('notifications-drawer'),
  notifications: byTestId<HTMLOListElement>('notifications'),
  notificationsEmpty: byTestId('notifications-empty'),
  banner: byTestId('system-banner'),
  login: byTestId('login-panel'),
  tokenForm: byTestId<HTMLFormElement>('token-form'),
  tokenInput: byTestId<HTMLTextAreaElement>('token-input'),
  devForm: byTestId<HTMLFormElement>('dev-token-form'),
  devUsername: byTestId<HTMLInputElement>('dev-username'),
  loginError: byTestId('login-error'),
  dashboard: byTestId('dashboard'),
  onlineCount: byTestId('online-count'),
  onlineUsers: byTestId<HTMLUListElement>('online-users'),
  knownUsers: byTestId<HTMLDataListElement>('known-users'),
  joinForm: byTestId<HTMLFormElement>('join-form'),
  roomInput: byTestId<HTMLInputElement>('room-input'),
  roomsError: byTestId('rooms-error'),
  roomList: byTestId<HTMLUListElement>('room-list'),
  roomsEmpty: byTestId('rooms-empty'),
  tabs: byTestId('chat-tabs'),
  panes: byTestId('chat-panes'),
  chatEmpty: byTestId('chat-empty'),
  feed: byTestId<HTMLOListElement>('feed'),
  feedCount: byTestId('feed-count'),
  feedFilter: byTestId<HTMLSelectElement>('feed-filter'),
  feedClear: byTestId<HTMLButtonElement>('feed-clear'),
  adminForm: byTestId<HTMLFormElement>('admin-form'),
  apiKey: byTestId<HTMLInputElement>('api-key'),
  adminKind: byTestId<HTMLSelectElement>('admin-kind'),
  adminTarget: byTestId<HTMLSelectElement>('admin-target'),
  adminTargetValue: byTestId<HTMLInputElement>('admin-target-value'),
  adminResult: byTestId('admin-result'),
  toasts: byTestId('toasts'),
};

function field(testId: string): HTMLInputElement {
  return byTestId<HTMLInputElement>(testId, ui.adminForm);
}

// ---- log-in ------------------------------------------------------------------------------

async function loadConfig(): Promise<void> {
  try {
    const response = await fetch(new URL('config', consoleBase), { cache: 'no-store' });
    if (response.ok) config = (await response.json()) as Config;
  } catch {
    // an older gateway without the endpoint: JWT log-in only
  }
  ui.devForm.hidden = !config.dev_tokens;
  if (!config.publish_api) {
    showAdminResult(false, 'This gateway has no API_KEY: the HTTP API is off (POST /api/publish answers 404).');
  }
}

async function mintDevToken(username: string): Promise<string> {
  const response = await fetch(new URL('dev-token', consoleBase), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username }),
  });
  const body: unknown = await response.json().catch(() => null);
  if (response.ok && isRecord(body) && typeof body['token'] === 'string') return body['token'];
  if (response.status === 404) throw new Error('demo tokens are off: this gateway has a configured JWT secret');
  throw new Error(errorMessage(body) ?? `HTTP ${response.status}`);
}

function connect(newToken: string): void {
  logout(false);
  token = newToken.trim();
  if (!token) {
    ui.loginError.textContent = 'Paste a token first.';
    return;
  }
  const current = new RealtimeClient({
    url: location.origin,
    path: `${gatewayBase.pathname}socket.io/`,
    token,
    // WebSocket only: no sticky sessions needed behind a load balancer (long-polling needs them)
    // and no polling-to-WebSocket upgrade, whose probe window has lost broadcasts (app/transport/fanout.py
    // writes to an upgrade's WebSocket before the client's upgrade packet).
    transports: ['websocket'],
    reconnect: { initialDelayMs: 500, maxDelayMs: 5000 },
  });
  client = current;
  current.on('state', (state) => showState(state));
  current.on('envelope', (envelope) => addToFeed(envelope));
  current.on('welcome', ({ content }) => {
    me = { userId: String(content.user_id), username: String(content.username) };
    ui.identity.textContent = `${me.username} (${me.userId})`;
    ui.identity.dataset['userId'] = me.userId;
    renderOnline();
  });
  current.on('user_status', ({ content }) => {
    applyStatus({ userId: String(content.user_id), name: String(content.user_name), online: content.status === 'online' });
  });
  current.on('room_message', (envelope) => addChatMessage(envelope));
  current.on('notification', (envelope) => notify(envelope));
  current.on('system', (envelope) => showSystem(envelope));
  current.on('rooms', (list) => syncRooms(list));
  // a reconnect that could not resume the session missed messages: fill the rooms from history
  current.on('recovery', ({ recovered }) => {
    if (!recovered) for (const room of rooms.keys()) void loadBacklog(room);
  });
  current.on('auth_error', (error) => {
    if (client !== current) return;
    logout(true);
    ui.loginError.textContent = `Token refused: ${error.message}`;
  });
  ui.login.hidden = true;
  ui.dashboard.hidden = false;
  ui.logout.hidden = false;
  ui.bell.hidden = false;
  ui.loginError.textContent = '';
  sessionStorage.setItem(TOKEN_KEY, token);
  current.connect().catch((error: unknown) => {
    if (client === current && !(error instanceof AuthError)) {
      ui.loginError.textContent = `Could not connect: ${error instanceof Error ? error.message : String(error)}`;
    }
  });
}

/** Closes the connection and clears every panel; `forget` also drops the token kept for this tab. */
function logout(forget: boolean): void {
  const previous = client;
  client = null;
  previous?.disconnect();
  me = null;
  online.clear();
  statusBuffer = null;
  for (const room of [...rooms.keys()]) removeRoom(room);
  feedTypes.clear();
  ui.feed.replaceChildren();
  renderFeedFilter();
  ui.notifications.replaceChildren();
  ui.notificationsEmpty.hidden = false;
  ui.toasts.replaceChildren();
  setUnread(0);
  ui.banner.hidden = true;
  ui.identity.textContent = '';
  delete ui.identity.dataset['userId'];
  ui.roomsError.textContent = '';
  renderOnline();
  showState('disconnected');
  if (forget) {
    sessionStorage.removeItem(TOKEN_KEY);
    ui.dashboard.hidden = true;
    ui.logout.hidden = true;
    ui.bell.hidden = true;
    ui.drawer.hidden = true;
    ui.login.hidden = false;
  }
}

function showState(state: ConnectionState): void {
  ui.status.dataset['state'] = state;
  ui.status.textContent = state;
  if (state === 'connected') void refreshOnline();
}

// ---- presence ----------------------------------------------------------------------------

async function refreshOnline(): Promise<void> {
  const current = client;
  statusBuffer = [];
  try {
    // a node started with --presence-announce watchers only tells connections that watch; asked
    // before the list is fetched, so no change falls between the list and the live updates
    await current?.request('watch_presence', '*');
    const response = await fetch(gatewayUrl('ws/online-users'), {
      headers: { Authorization: `Bearer ${token}` },
      cache: 'no-store',
    });
    const body: unknown = await response.json();
    if (client !== current) return;
    if (!response.ok || !isRecord(body) || !Array.isArray(body['users'])) {
      throw new Error(isRecord(body) && typeof body['error'] === 'string' ? body['error'] : `HTTP ${response.status}`);
    }
    online.clear();
    for (const user of body['users'] as unknown[]) {
      if (isRecord(user)) online.set(String(user['user_id']), String(user['user_name'] ?? user['user_id']));
    }
    for (const change of statusBuffer ?? []) setOnline(change);
  } catch (error) {
    if (client === current) {
      ui.onlineUsers.replaceChildren(
        h('li', { className: 'error', text: `online users unavailable: ${error instanceof Error ? error.message : String(error)}` }),
      );
      return;
    }
  } finally {
    if (client === current) statusBuffer = null;
  }
  renderOnline();
}

function applyStatus(change: { userId: string; name: string; online: boolean }): void {
  statusBuffer?.push(change);
  setOnline(change);
  renderOnline();
}

function setOnline({ userId, name, online: isOnline }: { userId: string; name: string; online: boolean }): void {
  if (isOnline) online.set(userId, name);
  else online.delete(userId);
}

function renderOnline(): void {
  const users = [...online].sort(([, a], [, b]) => a.localeCompare(b));
  ui.onlineCount.textContent = String(users.length);
  ui.onlineUsers.replaceChildren(
    ...users.map(([userId, name]) =>
      h(
        'li',
        { attrs: { 'data-testid': 'online-user', 'data-user-id': userId } },
        h('span', { className: 'dot' }),
        h('span', { className: 'name', text: name === userId ? name : `${name} (${userId})` }),
        me?.userId === userId && h('span', { className: 'you', text: 'you' }),
      ),
    ),
  );
  ui.knownUsers.replaceChildren(...users.map(([userId, name]) => h('option', { attrs: { value: userId, label: name } })));
}

// ---- rooms and chat ----------------------------------------------------------------------

function syncRooms(list: readonly string[]): void {
  for (const room of list) if (!rooms.has(room)) addRoom(room);
  for (const room of [...rooms.keys()]) if (!list.includes(room)) removeRoom(room);
  renderRoomList();
}

function addRoom(room: string): void {
  const badge = h('span', { className: 'unread' });
  const tab = h('button', { attrs: { type: 'button', role: 'tab', 'data-testid': 'chat-tab', 'data-room': room } }, room, badge);
  tab.addEventListener('click', () => selectRoom(room));
  const messages = h('ol', { className: 'messages', attrs: { 'data-testid': 'chat-messages' } });
  const input = h('input', {
    attrs: { 'data-testid': 'chat-input', placeholder: `Message ${room}`, 'aria-label': `Message ${room}`, maxlength: '2000' },
  });
  const error = h('p', { className: 'error', attrs: { 'data-testid': 'chat-error', role: 'alert' } });
  const form = h('form', { attrs: { autocomplete: 'off' } }, input, h('button', { text: 'Send', attrs: { type: 'submit', 'data-testid': 'chat-send' } }));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const message = input.value.trim();
    if (!message || !client) return;
    input.value = '';
    error.textContent = '';
    client.sendToRoom(room, message).catch((failure: unknown) => {
      error.textContent = describe(failure);
    });
  });
  const pane = h('div', { className: 'pane', attrs: { 'data-testid': 'chat-pane', 'data-room': room, role: 'tabpanel' } }, messages, form, error);
  rooms.set(room, { tab, badge, pane, messages, unread: 0, shown: new Set() });
  ui.tabs.append(tab);
  ui.panes.append(pane);
  selectRoom(room);
  void loadBacklog(room);
}

/** The room's recent messages (the gateway's history), placed in time order among those shown. */
async function loadBacklog(room: string): Promise<void> {
  const current = client;
  let backlog: Envelope[];
  try {
    backlog = current ? await current.history(room, { limit: BACKLOG }) : [];
  } catch {
    return; // history off or refused: the room simply starts empty
  }
  const view = rooms.get(room);
  if (client !== current || !view) return;
  const live = [...view.messages.children];
  for (const envelope of backlog) {
    if (envelope.type !== 'room_message' || view.shown.has(envelope.id)) continue;
    view.shown.add(envelope.id);
    const item = chatItem(envelope as Envelope<'room_message'>);
    item.classList.add('backlog');
    const later = live.find((node) => Number((node as HTMLElement).dataset['timestamp']) > envelope.timestamp);
    view.messages.insertBefore(item, later ?? null);
  }
  trimChat(view);
  view.messages.scrollTop = view.messages.scrollHeight;
}

/** Keeps the newest CHAT_LIMIT messages of a room (and only their ids in `shown`). */
function trimChat(view: RoomView): void {
  while (view.messages.childElementCount > CHAT_LIMIT) {
    const oldest = view.messages.firstElementChild as HTMLElement | null;
    if (!oldest) break;
    view.shown.delete(oldest.dataset['id'] ?? '');
    oldest.remove();
  }
}

function chatItem(envelope: Envelope<'room_message'>): HTMLElement {
  const mine = me !== null && envelope.from === me.userId;
  return h(
    'li',
    {
      className: mine ? 'mine' : '',
      attrs: {
        'data-testid': 'chat-message',
        'data-from': envelope.from ?? '',
        'data-id': envelope.id,
        'data-timestamp': String(envelope.timestamp),
      },
    },
    h('span', { className: 'who', text: envelope.from_name ?? envelope.from ?? 'server' }),
    h('span', { className: 'text', text: text(envelope.content?.text ?? envelope.content) }),
    clock(envelope.timestamp),
  );
}

function removeRoom(room: string): void {
  const view = rooms.get(room);
  if (!view) return;
  view.tab.remove();
  view.pane.remove();
  rooms.delete(room);
  if (activeRoom === room) selectRoom(rooms.keys().next().value ?? null);
  renderRoomList();
}

function selectRoom(room: string | null): void {
  activeRoom = room;
  for (const [name, view] of rooms) {
    const active = name === room;
    view.pane.hidden = !active;
    view.tab.setAttribute('aria-selected', String(active));
    if (active) {
      view.unread = 0;
      view.badge.textContent = '';
    }
  }
  ui.chatEmpty.hidden = rooms.size > 0;
}

function renderRoomList(): void {
  ui.roomList.replaceChildren(
    ...[...rooms.keys()].map((room) => {
      const open = h('button', { className: 'quiet name', text: room, attrs: { type: 'button', 'data-testid': 'open-room' } });
      open.addEventListener('click', () => selectRoom(room));
      const leave = h('button', { className: 'quiet', text: 'Leave', attrs: { type: 'button', 'data-testid': 'leave-button' } });
      leave.addEventListener('click', () => {
        ui.roomsError.textContent = '';
        client?.leaveRoom(room).catch((failure: unknown) => {
          ui.roomsError.textContent = describe(failure);
        });
      });
      return h('li', { attrs: { 'data-testid': 'room-item', 'data-room': room } }, open, leave);
    }),
  );
  ui.roomsEmpty.hidden = rooms.size > 0;
  ui.chatEmpty.hidden = rooms.size > 0;
}

function addChatMessage(envelope: Envelope<'room_message'>): void {
  const room = envelope.room ?? (isRecord(envelope.content) ? String(envelope.content['room'] ?? '') : '');
  const view = rooms.get(room);
  if (!view || view.shown.has(envelope.id)) return;
  view.shown.add(envelope.id);
  const mine = me !== null && envelope.from === me.userId;
  const item = chatItem(envelope);
  const atBottom = view.messages.scrollTop + view.messages.clientHeight >= view.messages.scrollHeight - 8;
  view.messages.append(item);
  trimChat(view);
  if (atBottom || mine) view.messages.scrollTop = view.messages.scrollHeight;
  if (room !== activeRoom) {
    view.unread += 1;
    view.badge.textContent = String(view.unread);
  }
}

// ---- feed --------------------------------------------------------------------------------

function addToFeed(envelope: Envelope): void {
  const type = String(envelope.type);
  const known = feedTypes.has(type);
  feedTypes.set(type, (feedTypes.get(type) ?? 0) + 1);
  const where = [
    envelope.from_name || envelope.from ? `from ${envelope.from_name ?? envelope.from}` : '',
    envelope.room ? `in ${envelope.room}` : '',
  ]
    .filter(Boolean)
    .join(' ');
  const summary = h(
    'summary',
    {},
    clock(envelope.timestamp),
    h('span', { className: 'type', text: type }),
    where ? `${where}: ` : '',
    preview(envelope.content),
  );
  let body: string;
  try {
    body = JSON.stringify(envelope, null, 2);
  } catch {
    body = String(envelope);
  }
  const item = h('li', { attrs: { 'data-testid': 'feed-item', 'data-type': type } }, h('details', {}, summary, h('pre', { text: body })));
  item.hidden = ui.feedFilter.value !== '' && ui.feedFilter.value !== type;
  ui.feed.prepend(item);
  while (ui.feed.childElementCount > FEED_LIMIT) ui.feed.lastElementChild?.remove();
  ui.feedCount.textContent = String(ui.feed.childElementCount);
  if (!known) renderFeedFilter();
  else updateFilterCount(type);
}

function renderFeedFilter(): void {
  const selected = ui.feedFilter.value;
  const options = [h('option', { text: 'all types', attrs: { value: '' } })];
  for (const type of [...feedTypes.keys()].sort()) {
    options.push(h('option', { text: `${type} (${feedTypes.get(type)})`, attrs: { value: type } }));
  }
  ui.feedFilter.replaceChildren(...options);
  ui.feedFilter.value = feedTypes.has(selected) ? selected : '';
  ui.feedCount.textContent = String(ui.feed.childElementCount);
}

function updateFilterCount(type: string): void {
  for (const option of ui.feedFilter.options) {
    if (option.value === type) option.textContent = `${type} (${feedTypes.get(type)})`;
  }
}

function applyFeedFilter(): void {
  const type = ui.feedFilter.value;
  for (const item of ui.feed.children) {
    (item as HTMLElement).hidden = type !== '' && (item as HTMLElement).dataset['type'] !== type;
  }
}

// ---- notifications and system messages -----------------------------------------------------

function notify(envelope: Envelope<'notification'>): void {
  const content: Record<string, unknown> = isRecord(envelope.content) ? envelope.content : { title: text(envelope.content) };
  const title = text(content['title']) || 'Notification';
  const body = text(content['body']);
  const link = safeUrl(content['link']);
  const icon = safeUrl(content['icon']);
  const parts = (): Node[] => [
    ...(icon ? [h('img', { attrs: { src: icon, alt: '' } })] : []),
    h('strong', { text: title }),
    ...(body ? [h('span', { text: body })] : []),
    ...(link ? [h('a', { text: 'Open', attrs: { href: link, target: '_blank', rel: 'noopener noreferrer' } })] : []),
  ];

  const close = h('button', { className: 'close', text: '×', attrs: { type: 'button', 'aria-label': 'Dismiss' } });
  const toast = h('div', { className: 'toast', attrs: { 'data-testid': 'toast', role: 'status', 'data-id': envelope.id } }, ...parts(), close);
  close.addEventListener('click', () => toast.remove());
  ui.toasts.append(toast);
  while (ui.toasts.childElementCount > TOASTS_SHOWN) ui.toasts.firstElementChild?.remove();
  setTimeout(() => toast.remove(), TOAST_MS);

  ui.notifications.prepend(
    h('li', { attrs: { 'data-testid': 'notification-item', 'data-id': envelope.id } }, ...parts(), h('br'), clock(envelope.timestamp)),
  );
  ui.notificationsEmpty.hidden = true;
  setUnread(ui.drawer.hidden ? unread + 1 : 0);
}

function setUnread(count: number): void {
  unread = count;
  ui.unread.textContent = String(count);
  ui.unread.dataset['count'] = String(count);
  document.title = count > 0 ? `(${count}) realtime-gateway console` : 'realtime-gateway console';
}

function showSystem(envelope: Envelope<'system'>): void {
  const content = isRecord(envelope.content) ? envelope.content : { message: envelope.content };
  const level = typeof content['level'] === 'string' ? content['level'] : 'info';
  ui.banner.dataset['level'] = level;
  ui.banner.textContent = `${level}: ${text(content['message'])}`;
  ui.banner.hidden = false;
}

// ---- admin panel (POST /api/publish) -------------------------------------------------------

function showAdminResult(ok: boolean, message: string): void {
  ui.adminResult.dataset['ok'] = String(ok);
  ui.adminResult.textContent = message;
}

function adminKindChanged(): void {
  for (const fieldset of ui.adminForm.querySelectorAll<HTMLFieldSetElement>('fieldset[data-kind]')) {
    fieldset.hidden = fieldset.dataset['kind'] !== ui.adminKind.value;
  }
}

function adminTargetChanged(): void {
  const target = ui.adminTarget.value;
  ui.adminTargetValue.hidden = target === 'all';
  ui.adminTargetValue.placeholder = target === 'user' ? 'user id' : 'room name';
  ui.adminTargetValue.setAttribute('list', target === 'user' ? 'known-users' : '');
}

function buildPublish(): { target: Record<string, unknown>; type: string; content: Record<string, unknown> } {
  const targetKind = ui.adminTarget.value;
  const address = ui.adminTargetValue.value.trim();
  if (targetKind !== 'all' && !address) throw new Error(`Enter the ${targetKind === 'user' ? 'user id' : 'room name'}.`);
  const target = targetKind === 'all' ? { all: true } : { [targetKind]: address };
  const value = (testId: string): string => field(testId).value.trim();
  switch (ui.adminKind.value) {
    case 'system':
      if (!value('admin-message')) throw new Error('Enter the message.');
      return {
        target,
        type: 'system',
        content: { message: value('admin-message'), level: value('admin-level') || 'info', code: Number(value('admin-code') || 0) },
      };
    case 'data_update': {
      if (!value('admin-entity') || !value('admin-action')) throw new Error('Enter the entity and the action.');
      const content: Record<string, unknown> = { entity: value('admin-entity'), action: value('admin-action') };
      if (value('admin-id')) content['id'] = value('admin-id');
      const data = value('admin-data');
      if (data) {
        try {
          content['data'] = JSON.parse(data);
        } catch {
          throw new Error('Data is not valid JSON.');
        }
      }
      return { target, type: 'data_update', content };
    }
    default: {
      if (!value('admin-title')) throw new Error('Enter a title.');
      const content: Record<string, unknown> = { title: value('admin-title'), body: value('admin-body') };
      if (value('admin-link')) content['link'] = value('admin-link');
      return { target, type: 'notification', content };
    }
  }
}

async function sendAdmin(): Promise<void> {
  const key = ui.apiKey.value.trim();
  if (!key) {
    showAdminResult(false, 'Enter the API key (the gateway’s API_KEY).');
    return;
  }
  let body: ReturnType<typeof buildPublish>;
  try {
    body = buildPublish();
  } catch (error) {
    showAdminResult(false, error instanceof Error ? error.message : String(error));
    return;
  }
  showAdminResult(true, 'Sending…');
  try {
    const response = await fetch(gatewayUrl('api/publish'), {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const answer: unknown = await response.json().catch(() => null);
    if (response.status === 202 && isRecord(answer)) {
      showAdminResult(true, `Sent ${body.type} (id ${String(answer['id'])}).`);
    } else if (response.status === 401) {
      showAdminResult(false, 'The API key was refused (401).');
    } else if (response.status === 404) {
      showAdminResult(false, 'The HTTP API is off: start the gateway with API_KEY (404).');
    } else {
      const message = errorMessage(answer) ?? response.statusText;
      showAdminResult(false, `${response.status}: ${message}`);
    }
  } catch (error) {
    showAdminResult(false, `Request failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}

// ---- wiring ------------------------------------------------------------------------------

function describe(failure: unknown): string {
  if (failure instanceof ServerError) return `${failure.code}: ${failure.message}`;
  return failure instanceof Error ? failure.message : String(failure);
}

function start(): void {
  ui.tokenForm.addEventListener('submit', (event) => {
    event.preventDefault();
    connect(ui.tokenInput.value);
  });
  ui.devForm.addEventListener('submit', (event) => {
    event.preventDefault();
    ui.loginError.textContent = '';
    mintDevToken(ui.devUsername.value.trim()).then(
      (minted) => {
        ui.tokenInput.value = minted;
        connect(minted);
      },
      (error: unknown) => {
        ui.loginError.textContent = describe(error);
      },
    );
  });
  ui.logout.addEventListener('click', () => logout(true));
  ui.bell.addEventListener('click', () => {
    ui.drawer.hidden = !ui.drawer.hidden;
    ui.bell.setAttribute('aria-expanded', String(!ui.drawer.hidden));
    if (!ui.drawer.hidden) setUnread(0);
  });
  ui.banner.addEventListener('click', () => {
    ui.banner.hidden = true;
  });
  ui.joinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const room = ui.roomInput.value.trim();
    if (!room || !client) return;
    ui.roomsError.textContent = '';
    client.joinRoom(room).then(
      () => {
        ui.roomInput.value = '';
        selectRoom(room);
      },
      (failure: unknown) => {
        ui.roomsError.textContent = describe(failure);
      },
    );
  });
  ui.feedFilter.addEventListener('change', applyFeedFilter);
  ui.feedClear.addEventListener('click', () => {
    feedTypes.clear();
    ui.feed.replaceChildren();
    renderFeedFilter();
  });
  // The API key lives in this tab's sessionStorage only: gone when the tab closes.
  ui.apiKey.value = sessionStorage.getItem(API_KEY_KEY) ?? '';
  ui.apiKey.addEventListener('input', () => {
    const key = ui.apiKey.value.trim();
    if (key) sessionStorage.setItem(API_KEY_KEY, key);
    else sessionStorage.removeItem(API_KEY_KEY);
  });
  ui.adminKind.addEventListener('change', adminKindChanged);
  ui.adminTarget.addEventListener('change', adminTargetChanged);
  ui.adminForm.addEventListener('submit', (event) => {
    event.preventDefault();
    void sendAdmin();
  });
  adminKindChanged();
  adminTargetChanged();
  renderOnline();
  renderRoomList();

  void loadConfig().then(() => {
    document.body.dataset['ready'] = 'true';
  });
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    ui.tokenInput.value = saved;
    connect(saved);
  }
}

start();
