// Builds the console into app/static/console/ (or the directory given as the first argument):
// console.js (src/console.ts + the frontend-adapter + socket.io-client, one ES module),
// ops.js (the operator page, src/ops.ts), console.css (both pages), index.html and ops.html. The output is committed; the same inputs give the same bytes
// (no timestamps, no absolute paths, no source maps), which tests/test_console.py checks.
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(process.argv[2] ?? path.join(here, '..', 'app', 'static', 'console'));
const PAGES = ['index.html', 'ops.html'];
const OUTPUTS = [...PAGES, 'console.js', 'ops.js', 'console.css'];

// The frontend-adapter imports socket.io-client; take it from this package's lock file (not from
// frontend-adapter/node_modules, which may be absent or at another version), so this build
// depends on console/package-lock.json alone.
const ownSocketIo = {
  name: 'own-socket.io-client',
  setup(build) {
    build.onResolve({ filter: /^socket\.io-client$/ }, (args) => {
      if (args.pluginData === 'own') return undefined;
      return build.resolve(args.path, { kind: args.kind, resolveDir: here, pluginData: 'own' });
    });
  },
};

await mkdir(outdir, { recursive: true });
for (const name of await readdir(outdir)) {
  if (!OUTPUTS.includes(name)) await rm(path.join(outdir, name), { recursive: true });
}

const common = {
  absWorkingDir: here,
  bundle: true,
  minify: true,
  charset: 'utf8',
  legalComments: 'eof',
  logLevel: 'warning',
  sourcemap: false,
};
for (const entry of ['console', 'ops']) {
  await esbuild.build({
    ...common,
    entryPoints: [`src/${entry}.ts`],
    outfile: path.join(outdir, `${entry}.js`),
    format: 'esm',
    platform: 'browser',
    target: ['es2022', 'chrome100', 'firefox100', 'safari15.4'],
    plugins: [ownSocketIo],
  });
}
await esbuild.build({
  ...common,
  entryPoints: ['src/console.css'],
  outfile: path.join(outdir, 'console.css'),
  target: ['chrome100', 'firefox100', 'safari15.4'],
});
for (const page of PAGES) await copyFile(path.join(here, 'src', page), path.join(outdir, page));
console.log(`console built into ${path.relative(process.cwd(), outdir) || '.'}`);
