// Type-checked only (tsc --noEmit), not part of the app: proves the declarations are real types,
// not `any`. Each @ts-expect-error below is itself an error if the line it marks type-checks.
import { RealtimeClient, type Envelope } from '@realtime-gateway/client';

export function misuse(client: RealtimeClient, envelope: Envelope<'room_message'>): RealtimeClient {
  // @ts-expect-error a room name is a string
  void client.joinRoom(42);
  // @ts-expect-error a chat message's text may be absent
  const text: string = envelope.content.text;
  void text;
  // @ts-expect-error not an option of the client
  return new RealtimeClient({ url: 'https://rt.example.com', token: 't', colour: 'red' });
}
