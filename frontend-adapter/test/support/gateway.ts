/**
 * A real gateway process for the tests: `$GATEWAY_PYTHON -m realtime_gateway` started from the repository
 * root on a free loopback port, ready once `GET /healthz` answers 200. `restart()` brings it back
 * on the same port so connected clients exercise their reconnect path.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:net';
import path from 'node:path';

const REPO_ROOT = process.env['GATEWAY_ROOT'] ?? path.resolve(process.cwd(), '..');
const PYTHON = process.env['GATEWAY_PYTHON'] ?? 'python3';
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 15_000;

export const JWT_SECRET = 'frontend-adapter-test-secret-of-32+-bytes';

export class Gateway {
  readonly port: number;
  readonly url: string;
  readonly #env: NodeJS.ProcessEnv;
  #process: ChildProcess | null = null;
  readonly #apiKey = 'frontend-adapter-test-api-key';
  #stderr = '';

  private constructor(port: number, env: NodeJS.ProcessEnv) {
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.#env = env;
  }

  /** Starts a gateway; `env` adds or overrides settings (e.g. RATE_BURST). */
  static async start(env: NodeJS.ProcessEnv = {}): Promise<Gateway> {
    const gateway = new Gateway(await freePort(), env);
    await gateway.#spawn();
    return gateway;
  }

  /**
   * Stops the process: SIGKILL (default) is a crash, connections just break; SIGTERM a clean
   * shutdown, clients are told to disconnect (and the gateway may wait seconds for idle ones).
   */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGKILL'): Promise<void> {
    const child = this.#process;
    this.#process = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    await withTimeout(exited, STOP_TIMEOUT_MS, 'gateway exit');
  }

  /** POST /api/publish: what a back end does to push e.g. a notification to a user. */
  async publish(target: { user: string } | { room: string } | { all: true }, type: string, content: unknown): Promise<void> {
    const response = await fetch(`${this.url}/api/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.#apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ target, type, content }),
      signal: AbortSignal.timeout(5_000),
    });
    if (response.status !== 202) throw new Error(`publish: ${response.status} ${await response.text()}`);
  }

  /** Freezes the process (SIGSTOP): connections stay open but nothing is answered. */
  freeze(): void {
    this.#process?.kill('SIGSTOP');
  }

  thaw(): void {
    this.#process?.kill('SIGCONT');
  }

  async restart(signal: 'SIGTERM' | 'SIGKILL' = 'SIGKILL'): Promise<void> {
    await this.stop(signal);
    await this.#spawn();
  }

  async #spawn(): Promise<void> {
    this.#stderr = '';
    const child = spawn(PYTHON, ['-m', 'realtime_gateway'], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        JWT_SECRET,
        HOST: '127.0.0.1',
        PORT: String(this.port),
        LOG_LEVEL: 'WARNING',
        JWT_LEEWAY: '0', // the expiry tests time the close at exp itself
        REDIS_URL: '',
        API_KEY: this.#apiKey,
        ...this.#env,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString()).slice(-4000);
    });
    this.#process = child;
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) {
        throw new Error(`gateway exited with ${child.exitCode} at start:\n${this.#stderr}`);
      }
      if (await healthy(this.url)) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await this.stop('SIGKILL');
    throw new Error(`gateway not healthy after ${START_TIMEOUT_MS} ms:\n${this.#stderr}`);
  }
}

async function healthy(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
    return response.status === 200;
  } catch {
    return false;
  }
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** An HS256 JWT signed with the test secret; `ttlSeconds` may be negative (already expired). */
export function mintToken(userId: string, options: { username?: string; ttlSeconds?: number } = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const encode = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  const header = encode({ alg: 'HS256', typ: 'JWT' });
  const payload = encode({
    user_id: userId,
    username: options.username ?? userId,
    iat: now,
    exp: now + (options.ttlSeconds ?? 3600),
  });
  const signature = createHmac('sha256', JWT_SECRET).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

/** Rejects with a message naming `what` if `promise` has not settled within `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
