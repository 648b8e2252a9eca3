/**
 * `useRealtimeStore`: the seed guide's `useWebSocketStore` API (`connected`, `messages`,
 * `connect(token)`, `send(message)`, `disconnect()`) backed by RealtimeClient, plus the state
 * every screen ends up deriving by hand: joined rooms, online users, notifications.
 *
 * A separate entry point (`@realtime-gateway/client/pinia`) so that only applications using the store
 * need vue and pinia installed.
 *
 * The seed-compatible actions `connect` and `send` never reject (the seed's callers ignore
 * their result): a failure is stored in `lastError`. The newer helpers (`joinRoom`, ...)
 * return the client's promises, which do reject.
 */
import { defineStore } from 'pinia';
import { computed, ref, shallowRef } from 'vue';

import { RealtimeClient, type ConnectionState, type RealtimeClientOptions } from '../client.js';
import type { AckOk, ChatContent, Envelope, WelcomeContent } from '../envelope.js';
import { ClientClosedError, RealtimeError } from '../errors.js';
import { sendFrame, validateFrame } from '../frames.js';

export type RealtimeStoreOptions = Omit<RealtimeClientOptions, 'url' | 'token'> & {
  /** Gateway base URL. Default: the page's origin (gateway behind the same host). */
  url?: string;
  /** Envelopes kept in `messages`, oldest dropped first. Default 500. */
  maxMessages?: number;
};

export interface OnlineUser {
  user_id: string;
  user_name: string;
}

export interface StoredNotification extends Envelope<'notification'> {
  read: boolean;
}

export const useRealtimeStore = defineStore('realtime', () => {
  const state = ref<ConnectionState>('disconnected');
  const connected = computed(() => state.value === 'connected');
  /** Who the gateway says we are (from `welcome`); null until connected. */
  const user = ref<WelcomeContent | null>(null);
  const messages = ref<Envelope[]>([]);
  const rooms = ref<string[]>([]);
  const onlineUsers = ref<OnlineUser[]>([]);
  const notifications = ref<StoredNotification[]>([]);
  const unreadCount = computed(() => notifications.value.filter((notification) => !notification.read).length);
  const lastError = ref<RealtimeError | null>(null);
  /** Whether the last reconnect resumed the session (nothing missed); null until one happened. */
  const recovered = ref<boolean | null>(null);
  // The client is a live connection, not state: kept out of the store's (serialisable) state.
  const client = shallowRef<RealtimeClient | null>(null);
  let maxMessages = 500;

  function record(envelope: Envelope): void {
    messages.value.push(envelope);
    if (messages.value.length > maxMessages) messages.value.splice(0, messages.value.length - maxMessages);
    switch (envelope.type) {
      case 'welcome':
        user.value = (envelope as Envelope<'welcome'>).content;
        break;
      case 'user_status': {
        const { user_id, user_name, status } = (envelope as Envelope<'user_status'>).content;
        const others = onlineUsers.value.filter((online) => online.user_id !== user_id);
        onlineUsers.value = status === 'online' ? [...others, { user_id, user_name }] : others;
        break;
      }
      case 'notification':
        notifications.value.push({ ...(envelope as Envelope<'notification'>), read: false });
        break;
    }
  }

  /** Connects with `token` (replacing any previous connection); resolves once connected or failed. */
  async function connect(token: string, options: RealtimeStoreOptions = {}): Promise<void> {
    disconnect();
    const { url, maxMessages: keep, ...clientOptions } = options;
    maxMessages = keep ?? 500;
    const next = new RealtimeClient({ ...clientOptions, url: url ?? pageOrigin(), token });
    next.on('state', (value) => (state.value = value));
    next.on('rooms', (value) => (rooms.value = [...value]));
    next.on('envelope', record);
    next.on('auth_error', (error) => (lastError.value = error));
    next.on('recovery', (report) => (recovered.value = report.recovered));
    client.value = next;
    try {
      await next.connect();
      lastError.value = null;
    } catch (error) {
      if (client.value === next) lastError.value = asRealtimeError(error);
    }
  }

  /** Sends a `{type, content}` message as the seed store did; queued while reconnecting. */
  async function send(message: object): Promise<void> {
    try {
      await sendFrame(requireClient(), validateFrame(message));
    } catch (error) {
      lastError.value = asRealtimeError(error);
    }
  }

  /** Closes the connection; message and notification history is kept. */
  function disconnect(): void {
    client.value?.disconnect();
    client.value = null;
    state.value = 'disconnected';
    user.value = null;
    recovered.value = null;
    rooms.value = [];
    onlineUsers.value = [];
  }

  function requireClient(): RealtimeClient {
    if (!client.value) throw new ClientClosedError('not connected: call connect(token) first');
    return client.value;
  }

  const joinRoom = (room: string): Promise<AckOk> => requireClient().joinRoom(room);
  const leaveRoom = (room: string): Promise<AckOk> => requireClient().leaveRoom(room);
  const sendToRoom = (room: string, message: string | ChatContent): Promise<AckOk> =>
    requireClient().sendToRoom(room, message);
  const sendToUser = (userId: string, message: string | ChatContent): Promise<AckOk> =>
    requireClient().sendToUser(userId, message);
  const ping = (): Promise<number> => requireClient().ping();
  /** `user_status` for these users (`'*'`: everyone) into `onlineUsers`, also after reconnects. */
  const watchPresence = (userIds: readonly string[] | '*'): Promise<Record<string, 'online' | 'offline'>> =>
    requireClient().watchPresence(userIds);

  function markNotificationRead(id: string): void {
    const notification = notifications.value.find((candidate) => candidate.id === id);
    if (notification) notification.read = true;
  }

  function markAllNotificationsRead(): void {
    for (const notification of notifications.value) notification.read = true;
  }

  return {
    state,
    connected,
    user,
    messages,
    rooms,
    onlineUsers,
    notifications,
    unreadCount,
    lastError,
    recovered,
    connect,
    send,
    disconnect,
    joinRoom,
    leaveRoom,
    sendToRoom,
    sendToUser,
    ping,
    watchPresence,
    markNotificationRead,
    markAllNotificationsRead,
  };
});

function pageOrigin(): string {
  const origin = globalThis.location?.origin;
  if (!origin) throw new TypeError('useRealtimeStore().connect: pass {url} outside a browser page');
  return origin;
}

function asRealtimeError(error: unknown): RealtimeError {
  return error instanceof RealtimeError ? error : new RealtimeError(String(error), 'disconnected');
}
