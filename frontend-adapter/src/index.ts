/**
 * @realtime-gateway/client: the TypeScript client of realtime-gateway.
 *
 * - {@link RealtimeClient}: Socket.IO client with reconnect, room re-join and an offline queue.
 * - {@link GatewayWebSocket}: the same, behind the browser WebSocket interface.
 * - `useRealtimeStore` lives in `@realtime-gateway/client/pinia` (needs vue and pinia).
 */
export {
  RealtimeClient,
  type ClientEvents,
  type ConnectionState,
  type LifecycleEvents,
  type QueuedRequest,
  type RealtimeClientOptions,
  type RecoveryReport,
} from './client.js';
export { DEFAULT_BACKOFF, type ReconnectOptions } from './backoff.js';
export type {
  AckOk,
  ChatContent,
  Envelope,
  EnvelopeContentMap,
  EnvelopeType,
  ErrorContent,
  KnownEnvelope,
  NotificationContent,
  UserStatusContent,
  WelcomeContent,
} from './envelope.js';
export {
  AuthError,
  ClientClosedError,
  DisconnectedError,
  QueueOverflowError,
  RealtimeError,
  ServerError,
  TimeoutError,
  type LocalErrorCode,
} from './errors.js';
export type { ClientFrame } from './frames.js';
export {
  CLOSE_ABNORMAL,
  CLOSE_AUTH_REFUSED,
  GatewayCloseEvent,
  GatewayRecoveryEvent,
  GatewayWebSocket,
  type GatewayWebSocketOptions,
} from './gateway-websocket.js';
