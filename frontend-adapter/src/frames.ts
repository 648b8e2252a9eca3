/**
 * Plain-WebSocket style frames (`{type, content}` objects, as the seed store sends them) mapped
 * onto RealtimeClient calls. The WebSocket shim and the Pinia store's `send()` share it, so both
 * accept exactly what the gateway's /ws endpoint accepts.
 */
import type { RealtimeClient } from './client.js';
import { isRecord, type AckOk } from './envelope.js';
import { ServerError } from './errors.js';

export interface ClientFrame {
  type: string;
  content?: unknown;
  /** `room_message` only: the room, when it is not inside `content`. */
  room?: unknown;
  /** When present, the WebSocket shim answers with an `ack` frame carrying this id. */
  id?: unknown;
}

/** Parses a text frame; a frame the gateway's /ws would refuse throws a 400 ServerError. */
export function parseFrame(text: string): ClientFrame {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ServerError('frame is not valid JSON', 400);
  }
  return validateFrame(value);
}

export function validateFrame(value: unknown): ClientFrame {
  if (!isRecord(value)) throw new ServerError('frame must be a JSON object', 400);
  if (typeof value['type'] !== 'string' || value['type'] === '') {
    throw new ServerError('frame needs a string "type"', 400);
  }
  return value as unknown as ClientFrame;
}

/**
 * Sends a frame through the client. Room joins and leaves go through joinRoom/leaveRoom so the
 * client re-joins them after a reconnect; content of the wrong shape is passed on unchanged
 * so that the gateway, not this adapter, decides how to refuse it.
 */
export function sendFrame(client: RealtimeClient, frame: ClientFrame): Promise<AckOk> {
  const { type, content } = frame;
  if (type === 'join_room' && typeof content === 'string') return client.joinRoom(content);
  if (type === 'leave_room' && typeof content === 'string') return client.leaveRoom(content);
  if (type === 'room_message') {
    const room = isRecord(content) && typeof content['room'] === 'string' ? content['room'] : frame.room;
    if (typeof room === 'string' && (isRecord(content) || typeof content === 'string')) {
      return client.sendToRoom(room, content);
    }
  }
  return client.request(type, content ?? null);
}
