// Drives headless Debian Chromium with playwright-core for tests/threejs_harness.py.
//
// usage: node driver.mjs <chromium executable> <page url>
// Protocol: one JSON object per line on stdin, one JSON reply per line on stdout.
//   request  {"id": n, "fn": "studioRender" | "studioBench", "spec": {...}}
//   reply    {"id": n, "ok": true, "result": {...}} | {"id": n, "ok": false, "error": "..."}
// The first line written is {"ready": true, "browser": version, "revision": three revision}.
// The page (and its WebGLRenderer, compiled programs and PMREM cache) is kept across requests;
// it is reloaded after a request fails, so a broken state does not leak into the next one.
// Page console errors and page errors go to stderr.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const [executablePath, pageUrl] = process.argv.slice(2);
if (!executablePath || !pageUrl) {
  process.stderr.write('usage: node driver.mjs <chromium> <page url>\n');
  process.exit(2);
}

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--enable-unsafe-swiftshader', '--use-angle=swiftshader',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
  '--ignore-gpu-blocklist',
];

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'studio-chromium-'));
let context;
const send = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

async function shutdown(code) {
  try { if (context) await context.close(); } catch (e) { /* already gone */ }
  fs.rmSync(userDataDir, { recursive: true, force: true });
  process.exit(code);
}

try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath, headless: true, args: ARGS, viewport: { width: 800, height: 600 },
  });
} catch (e) {
  process.stderr.write(`could not start Chromium at ${executablePath}: ${e.message}\n`);
  await shutdown(3);
}
const page = context.pages()[0] ?? await context.newPage();
page.on('console', (msg) => {
  if (msg.type() === 'error' || msg.type() === 'warning') process.stderr.write(`[page ${msg.type()}] ${msg.text()}\n`);
});
page.on('pageerror', (err) => process.stderr.write(`[page error] ${err.message}\n`));

async function loadPage() {
  await page.goto(pageUrl, { waitUntil: 'load', timeout: 120000 });
  await page.waitForFunction(() => window.studioReady === true, null, { timeout: 120000 });
}

await loadPage();
send({ ready: true, browser: context.browser()?.version() ?? null,
       revision: await page.evaluate(() => window.studioThreeRevision) });

let needReload = false;
const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let req;
  try { req = JSON.parse(line); } catch (e) { send({ id: null, ok: false, error: `bad request: ${e.message}` }); continue; }
  if (req.fn === 'quit') break;
  try {
    if (needReload) await loadPage();
    needReload = false;
    const result = await page.evaluate(([fn, spec]) => window[fn](spec), [req.fn, req.spec]);
    send({ id: req.id, ok: true, result });
  } catch (e) {
    needReload = true;
    send({ id: req.id, ok: false, error: String(e && e.message || e) });
  }
}
await shutdown(0);
