// Builds the package into dist/ (run by `npm run build` and by `npm pack`/`npm publish` through
// `prepack`):
//
//   dist/*.js, *.d.ts, pinia/   ES modules and declarations, one per source file (tsc). Bundlers
//                                (Vite, webpack, esbuild) and Node use these; socket.io-client
//                                stays an ordinary dependency, so an application that also uses
//                                it directly gets one copy.
//   dist/browser/index.js        one minified ES module with socket.io-client inside, for a plain
//                                <script type="module"> without a bundler (also what unpkg and
//                                jsDelivr serve for the package). No Pinia store in it: that needs
//                                vue and pinia, which such a page would not have.
//
// dist/ is emptied first, so a file whose source was deleted cannot ship in the tarball.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

rmSync(path.join(here, 'dist'), { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {
  cwd: here,
  stdio: 'inherit',
});
await esbuild.build({
  absWorkingDir: here,
  entryPoints: ['src/index.ts'],
  outfile: 'dist/browser/index.js',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome100', 'firefox100', 'safari15.4'],
  minify: true,
  sourcemap: true,
  sourcesContent: true,
  legalComments: 'eof',
  logLevel: 'warning',
});
