/**
 * Loads the seed guide's Pinia store (test/fixtures/seed-websocket-store.ts, the guide's code
 * block verbatim) migrated the way the package README tells users to: the one constructor
 * `new WebSocket(wsUrl)` becomes `new GatewayWebSocket(wsUrl)`, plus the import of the class.
 * The TypeScript is transpiled with the typescript package, as a bundler would.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import ts from 'typescript';

import { GatewayWebSocket } from '../../src/index.js';

export const SEED_FIXTURE = path.resolve('test/fixtures/seed-websocket-store.ts');
const SEED_CONSTRUCTOR = 'new WebSocket(wsUrl)';

/** Every GatewayWebSocket the seed store created, in order. */
export const created: GatewayWebSocket[] = [];

/**
 * The class the migrated store imports as `GatewayWebSocket`: pointed at the test gateway
 * instead of the seed's hard-coded ws://localhost:8087, and recording its instances.
 */
export function seedWebSocketClass(gatewayUrl: string): typeof GatewayWebSocket {
  const Configured = GatewayWebSocket.configure({
    url: gatewayUrl,
    transports: ['websocket'],
    reconnect: { initialDelayMs: 50, maxDelayMs: 300 },
  });
  return class RecordedGatewayWebSocket extends Configured {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      created.push(this);
    }
  };
}

export interface SeedStoreModule {
  useWebSocketStore: () => {
    connected: boolean;
    messages: Array<{ type: string; content: Record<string, unknown> }>;
    connect(token: string): void;
    send(message: unknown): void;
    disconnect(): void;
  };
}

export async function loadSeedStore(gatewayUrl: string): Promise<SeedStoreModule> {
  const source = readFileSync(SEED_FIXTURE, 'utf8');
  if (source.split(SEED_CONSTRUCTOR).length !== 2) throw new Error(`expected one ${SEED_CONSTRUCTOR} in the seed`);
  const harness = pathToFileURL(path.resolve('.test-build/test/support/seed-store.js')).href;
  const migrated = [
    `import { seedWebSocketClass } from ${JSON.stringify(harness)};`,
    `const GatewayWebSocket = seedWebSocketClass(${JSON.stringify(gatewayUrl)});`,
    source.replace(SEED_CONSTRUCTOR, 'new GatewayWebSocket(wsUrl)'),
  ].join('\n');
  const { outputText } = ts.transpileModule(migrated, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  // Inside the package, so that the store's 'pinia' and 'vue' imports resolve to node_modules.
  const directory = path.resolve('.test-build/seed');
  mkdirSync(directory, { recursive: true });
  const file = path.join(directory, `websocket-store-${process.pid}.mjs`);
  writeFileSync(file, outputText);
  return (await import(pathToFileURL(file).href)) as SeedStoreModule;
}
