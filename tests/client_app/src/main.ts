// What an application built with Vite writes: the package's main entry, its types, a connection.
import { RealtimeClient, ServerError, type ConnectionState, type WelcomeContent } from '@realtime-gateway/client';

const params = new URLSearchParams(location.search);
const states: ConnectionState[] = [];
const client = new RealtimeClient({ url: params.get('gateway') ?? location.origin, token: params.get('token') ?? '' });

client.on('state', (state) => states.push(state));
client.on('welcome', (welcome) => {
  const content: WelcomeContent = welcome.content;
  document.body.dataset.welcome = JSON.stringify(content);
});

async function main(): Promise<void> {
  await client.connect();
  const rttMs: number = await client.ping();
  try {
    await client.joinRoom('user:someone-else');
  } catch (error) {
    if (error instanceof ServerError) document.body.dataset.refused = String(error.code);
  }
  document.body.dataset.rtt = String(rttMs >= 0);
  document.body.dataset.states = states.join(',');
}

main().catch((error: unknown) => {
  document.body.dataset.error = String(error);
});
