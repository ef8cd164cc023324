// Builds xr/dist/ (served by `studio serve` at /xr/): one ES-module bundle with code splitting,
// so the emulator (iwer, @iwer/sem) is only fetched with ?emulate=1, plus the KTX2 (Basis) and
// Draco decoders three.js loads at run time. Everything is local: the client needs no internet.
import { build } from 'esbuild';
import { cpSync, mkdirSync, rmSync } from 'node:fs';

const out = 'dist';
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: ['src/main.js'],
  bundle: true,
  splitting: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  outdir: out,
  logLevel: 'warning',
});
cpSync('index.html', `${out}/index.html`);
cpSync('node_modules/three/examples/jsm/libs/basis', `${out}/libs/basis`, { recursive: true });
cpSync('node_modules/three/examples/jsm/libs/draco/gltf', `${out}/libs/draco`, { recursive: true });
console.log('xr/dist built');
