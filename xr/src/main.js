// Studio WebXR client: shows the studio's live scene (studio/scene_stream.py) in a headset (VR or
// AR passthrough) or, without an XR device, on the desktop with orbit controls.
// URL parameters: ?token=… (API token), ?emulate=1|vr|ar (install the iwer emulated Quest 3,
// stereo; 'ar' also loads @iwer/sem's synthetic room ?room=office_small), ?probe=1 (latency and
// frame-time measurement: each frame that applied a delta waits for the GPU before timestamping).
import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { RoomEnvironment } from 'three/addons/environments/RoomEnvironment.js';
import { SparkRenderer } from '@sparkjsdev/spark';
import { SceneStream } from './stream.js';
import { AssetManager } from './assets.js';
import { Interaction } from './interaction.js';
import { ARPlacement } from './ar.js';

const params = new URLSearchParams(location.search);
const emulate = params.get('emulate');
const probe = params.has('probe');
const token = params.get('token');
const statusEl = document.getElementById('status');
const stats = {
  ready: false, clientId: null, seq: -1, applied: [], errors: [], frames: 0, xrFrames: 0,
  frameIntervals: [], renderMs: [], session: null, reconnects: 0, ar: null,
};
window.__xr = stats;
stats.timing = { start: performance.now() };

if (emulate) {
  const { XRDevice, metaQuest3 } = await import('iwer');
  const device = new XRDevice(metaQuest3, { stereoEnabled: true });
  device.installRuntime({ forceInstall: true });
  device.stereoEnabled = true;
  if (emulate === 'ar') {
    const { SyntheticEnvironmentModule } = await import('@iwer/sem');
    device.installSEM(SyntheticEnvironmentModule);
    await device.sem.loadDefaultEnvironment(params.get('room') || 'office_small');
  }
  window.__xrDevice = device;
}
stats.timing.emulator = performance.now();

const renderer = new THREE.WebGLRenderer({ antialias: !emulate, alpha: true, preserveDrawingBuffer: !!emulate });
renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
renderer.setSize(window.innerWidth, window.innerHeight);
renderer.toneMapping = THREE.NeutralToneMapping;
renderer.xr.enabled = true;
renderer.xr.setReferenceSpaceType('local-floor');
document.body.appendChild(renderer.domElement);

const scene = new THREE.Scene();
const background = new THREE.Color(0x202020);
scene.background = background;
// Image-based lighting from three's RoomEnvironment, except on a software rasteriser
// (SwiftShader: CI and the emulated headset) where its PMREM costs 10-15 s of start-up; there a
// hemisphere light stands in. ?env=1 / ?env=0 force either.
const glInfo = renderer.getContext().getExtension('WEBGL_debug_renderer_info');
const glName = glInfo ? String(renderer.getContext().getParameter(glInfo.UNMASKED_RENDERER_WEBGL)) : '';
stats.glRenderer = glName;
const software = /swiftshader|llvmpipe|software/i.test(glName);
if (params.get('env') === '1' || (params.get('env') !== '0' && !software)) {
  const pmrem = new THREE.PMREMGenerator(renderer);
  scene.environment = pmrem.fromScene(new RoomEnvironment(), 0.04).texture;
  pmrem.dispose();
} else {
  scene.add(new THREE.HemisphereLight(0xffffff, 0x404040, 2.0));
}
const sun = new THREE.DirectionalLight(0xffffff, 1.5);
sun.position.set(1, 3, 2);
scene.add(sun);
stats.timing.environment = performance.now();
const sparkOptions = JSON.parse(params.get('spark') || '{}'); // e.g. ?spark={"minSortIntervalMs":100}
scene.add(new SparkRenderer({ renderer, ...sparkOptions }));
stats.timing.spark = performance.now();

const camera = new THREE.PerspectiveCamera(60, window.innerWidth / window.innerHeight, 0.01, 200);
camera.position.set(0, 1.2, 1.6);
const controls = new OrbitControls(camera, renderer.domElement);
controls.target.set(0, 0.3, 0);
controls.update();

const root = new THREE.Group(); // placement root: AR anchor / VR placement; assets' stream transforms are relative to it
root.name = 'placement';
scene.add(root);

const base = `${location.origin}`;
const assets = new AssetManager(root, renderer, { token, base });
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/scene/ws${token ? `?token=${encodeURIComponent(token)}` : ''}`;
const pending = []; // deltas applied but not yet shown in a rendered frame
let framed = false;

function setStatus(text) { statusEl.textContent = text; }

function applyEnvironment(env) {
  if (env.background) background.setRGB(env.background[0], env.background[1], env.background[2], THREE.LinearSRGBColorSpace);
  if (env.exposure) renderer.toneMappingExposure = env.exposure;
}

function frameDesktop() {
  if (framed || renderer.xr.isPresenting || assets.assets.size === 0) return;
  const box = new THREE.Box3();
  for (const id of assets.assets.keys()) box.union(assets.box(id));
  if (box.isEmpty()) return;
  const c = box.getCenter(new THREE.Vector3());
  const r = Math.max(box.getSize(new THREE.Vector3()).length() / 2, 0.05);
  controls.target.copy(c);
  camera.position.copy(c).add(new THREE.Vector3(0, 0.5, 1).normalize().multiplyScalar(r * 3));
  camera.near = r / 100;
  camera.far = r * 100;
  camera.updateProjectionMatrix();
  controls.update();
  framed = true;
}

function applied(msg) {
  pending.push({ seq: msg.seq, type: msg.type, t: msg.t, recv: performance.timeOrigin + performance.now() });
}

async function onMessage(msg) {
  const recv = performance.timeOrigin + performance.now();
  try {
    switch (msg.type) {
      case 'snapshot':
        stats.clientId = msg.client;
        stats.timing.snapshot = performance.now();
        applyEnvironment(msg.environment || {});
        await assets.applySnapshot(msg.assets);
        stats.ready = true;
        stats.timing.ready = performance.now();
        frameDesktop();
        break;
      case 'asset_added':
      case 'asset_replaced':
        await assets.add(msg.asset);
        frameDesktop();
        break;
      case 'asset_removed': assets.remove(msg.id); break;
      case 'transform':
        if (!(msg.origin === stream.clientId && interaction.isGrabbing(msg.id))) assets.setTransform(msg.id, msg.matrix);
        break;
      case 'material': assets.setMaterial(msg.id, msg.material, !!msg.reset); break;
      case 'visibility': assets.setVisible(msg.id, msg.visible); break;
      case 'environment': applyEnvironment(msg.environment); break;
      case 'error': stats.errors.push(msg.detail); console.warn('scene stream:', msg.detail); return;
      default: return;
    }
    if (typeof msg.seq === 'number') { stats.seq = Math.max(stats.seq, msg.seq); pending.push({ seq: msg.seq, type: msg.type, t: msg.t, recv }); }
    setStatus(`${assets.assets.size} asset(s) · seq ${stats.seq}${renderer.xr.isPresenting ? ' · ' + stats.session : ''}`);
  } catch (err) {
    stats.errors.push(String(err));
    console.error(err);
  }
}

// Messages are applied one after another (a snapshot's loads finish before the next delta).
let chain = Promise.resolve();
const stream = new SceneStream(wsUrl, (msg) => { chain = chain.then(() => onMessage(msg)); }, (s) => {
  if (s === 'open') stats.timing.open ??= performance.now();
  if (s === 'closed') { stats.reconnects = stream?.reconnects ?? 0; setStatus('disconnected — reconnecting…'); }
});
window.__xrStream = stream;

const ar = new ARPlacement(renderer, root, scene);
const interaction = new Interaction(renderer, root, assets, stream, { onSelectEmpty: () => ar.requestPlace() });
interaction.addTo(scene);
window.__xrInteraction = interaction;

async function enter(mode) {
  if (renderer.xr.isPresenting) return;
  const init = mode === 'immersive-ar'
    ? { requiredFeatures: ['hit-test'], optionalFeatures: ['anchors', 'local-floor', 'plane-detection'] }
    : { optionalFeatures: ['local-floor', 'bounded-floor', 'hand-tracking'] };
  const session = await navigator.xr.requestSession(mode, init);
  stats.session = mode;
  interaction.locomotion = mode !== 'immersive-ar';
  if (mode === 'immersive-ar') {
    scene.background = null;
    await renderer.xr.setSession(session);
    await ar.begin(session);
  } else {
    root.position.set(0, 0, -1.5); // on the floor 1.5 m ahead, real scale
    await renderer.xr.setSession(session);
  }
  session.addEventListener('end', () => {
    stats.session = null;
    ar.end();
    scene.background = background;
    root.position.set(0, 0, 0);
    root.rotation.set(0, 0, 0);
  });
}

window.__xr.enterVR = () => enter('immersive-vr');
window.__xr.enterAR = () => enter('immersive-ar');
window.__xr.reset = () => interaction.reset();
window.__xr.rootPosition = () => { root.updateWorldMatrix(true, false); return new THREE.Vector3().setFromMatrixPosition(root.matrixWorld).toArray(); };
window.__xr.assetWorldPosition = (id) => {
  const e = assets.assets.get(id ?? [...assets.assets.keys()][0]);
  if (!e) return null;
  e.holder.updateWorldMatrix(true, false);
  return new THREE.Vector3().setFromMatrixPosition(e.holder.matrixWorld).toArray();
};
window.__xr.assetIds = () => [...assets.assets.keys()];
window.__xr.assetInfo = (id) => { const e = assets.assets.get(id); return e ? { ...e.info, shown: e.holder.visible } : null; };

const vrButton = document.getElementById('enter-vr');
const arButton = document.getElementById('enter-ar');
document.getElementById('reset').onclick = () => interaction.reset();
vrButton.onclick = () => enter('immersive-vr').catch((e) => setStatus(`VR failed: ${e.message}`));
arButton.onclick = () => enter('immersive-ar').catch((e) => setStatus(`AR failed: ${e.message}`));
if (navigator.xr) {
  navigator.xr.isSessionSupported('immersive-vr').then((ok) => { vrButton.disabled = !ok; if (!ok) vrButton.textContent = 'VR not available'; });
  navigator.xr.isSessionSupported('immersive-ar').then((ok) => { arButton.disabled = !ok; if (!ok) arButton.textContent = 'AR not available'; });
} else {
  vrButton.textContent = 'No WebXR — desktop view';
  arButton.style.display = 'none';
}

window.addEventListener('resize', () => {
  if (renderer.xr.isPresenting) return;
  camera.aspect = window.innerWidth / window.innerHeight;
  camera.updateProjectionMatrix();
  renderer.setSize(window.innerWidth, window.innerHeight);
});

const gl = renderer.getContext();
const px = new Uint8Array(4);
let lastTime = null;
const captures = [];
window.__xr.capture = () => new Promise((resolve) => captures.push(resolve));

renderer.setAnimationLoop((time, frame) => {
  const dt = lastTime === null ? 0 : Math.min((time - lastTime) / 1000, 0.1);
  if (lastTime !== null) { stats.frameIntervals.push(time - lastTime); if (stats.frameIntervals.length > 600) stats.frameIntervals.shift(); }
  lastTime = time;
  if (frame) {
    stats.xrFrames += 1;
    interaction.update(dt);
    ar.update(frame);
    stats.ar = { placed: ar.placed, anchored: !!ar.anchor, hits: ar.hits, hit: ar.lastHitPosition, anchor: ar.anchorPosition };
  } else {
    controls.update();
  }
  const shown = pending.splice(0, pending.length);
  const t0 = performance.now();
  renderer.render(scene, camera);
  if (probe) gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px); // wait until the GPU has drawn it
  const t1 = performance.now();
  stats.renderMs.push(t1 - t0);
  if (stats.renderMs.length > 600) stats.renderMs.shift();
  const done = performance.timeOrigin + t1;
  for (const p of shown) {
    stats.applied.push({ seq: p.seq, type: p.type, sent: p.t, recv: p.recv, shown: done, xr: !!frame });
  }
  if (stats.applied.length > 2000) stats.applied.splice(0, 1000);
  if (stats.frames === 0) stats.timing.firstFrame = performance.now();
  if (stats.frames < 30) (stats.timing.frames ??= []).push([Math.round(t0), Math.round(t1)]);
  stats.frames += 1;
  if (captures.length) {
    const url = renderer.domElement.toDataURL('image/png');
    for (const r of captures.splice(0)) r({ url, width: renderer.domElement.width, height: renderer.domElement.height, seq: stats.seq, xr: !!frame });
  }
});
