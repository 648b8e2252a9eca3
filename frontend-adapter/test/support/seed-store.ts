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

/** The seed store's source, and the same with its one constructor swapped. */
export function seedSources(): { original: string; swapped: string } {
  const original = readFileSync(SEED_FIXTURE, 'utf8');
  if (original.split(SEED_CONSTRUCTOR).length !== 2) throw new Error(`expected one ${SEED_CONSTRUCTOR} in the seed`);
  return { original, swapped: original.replace(SEED_CONSTRUCTOR, 'new GatewayWebSocket(wsUrl)') };
}

/**
 * TypeScript's diagnostics for each of `sources` (file name -> text) as modules of an
 * application (strict, DOM lib, vue and pinia from node_modules), checked in one program since
 * loading the libraries dominates the cost.
 */
export function typeErrors(sources: Record<string, string>): Record<string, string[]> {
  const directory = path.resolve('.test-build/seed-typecheck');
  mkdirSync(directory, { recursive: true });
  const files = Object.entries(sources).map(([name, text]) => {
    const file = path.join(directory, name);
    writeFileSync(file, text);
    return file;
  });
  const program = ts.createProgram(files, {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
    types: [],
  });
  return Object.fromEntries(
    files.map((file) => [
      path.basename(file),
      ts
        .getPreEmitDiagnostics(program, program.getSourceFile(file))
        .map((diagnostic) => ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')),
    ]),
  );
}

/** The import line the README's migration adds, as seen from the type-check directory. */
export const MIGRATION_IMPORT = "import { GatewayWebSocket } from '../../src/index.js'";

export async function loadSeedStore(gatewayUrl: string): Promise<SeedStoreModule> {
  const { swapped } = seedSources();
  const harness = pathToFileURL(path.resolve('.test-build/test/support/seed-store.js')).href;
  const migrated = [
    `import { seedWebSocketClass } from ${JSON.stringify(harness)};`,
    `const GatewayWebSocket = seedWebSocketClass(${JSON.stringify(gatewayUrl)});`,
    swapped,
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
