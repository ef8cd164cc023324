// three.js reference renderer for the studio's raster renderer tests and benchmark.
//
// render(spec) loads one glTF/GLB (and optionally one equirectangular .hdr environment through
// PMREM), renders it from every given view into one fixed-size canvas and returns the canvas
// pixels per view. Cameras arrive already converted to three.js conventions by the Python driver
// (tests/threejs_harness.py): `projection` is the 4x4 OpenGL clip-from-camera matrix and
// `matrixWorld` the 4x4 world-from-camera matrix with OpenGL camera axes (x right, y up, z back),
// both row-major nested arrays.
//
// Pixels: RGBA uint8, rows top-to-bottom, colour sRGB-encoded and *premultiplied* by alpha (the
// WebGL drawing buffer as it is: transparent clear, opaque surfaces write alpha 1, BLEND surfaces
// blend (SRC_ALPHA, ONE_MINUS_SRC_ALPHA) in sRGB space, MSAA resolves average premultiplied values).
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { HDRLoader } from 'three/addons/loaders/HDRLoader.js'; // RGBELoader's successor (r180+)

export const REVISION = THREE.REVISION;

const TONE_MAPPING = {
  none: THREE.NoToneMapping,
  aces: THREE.ACESFilmicToneMapping,
  neutral: THREE.NeutralToneMapping,
};

function makeRenderer(width, height, antialias) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  document.body.appendChild(canvas);
  const renderer = new THREE.WebGLRenderer({
    canvas,
    antialias,
    alpha: true,
    premultipliedAlpha: true,
    preserveDrawingBuffer: true,
    powerPreference: 'high-performance',
  });
  renderer.setPixelRatio(1);
  renderer.setSize(width, height, false);
  renderer.outputColorSpace = THREE.SRGBColorSpace;
  renderer.setClearColor(0x000000, 0);
  return renderer;
}

function rowMajor(m4) {
  // nested row-major [[..4],[..4],[..4],[..4]] -> THREE.Matrix4 (Matrix4.set takes row-major)
  const m = new THREE.Matrix4();
  const f = m4.flat();
  m.set(...f);
  return m;
}

function setCamera(camera, view) {
  camera.matrixAutoUpdate = false;
  camera.matrix.copy(rowMajor(view.matrixWorld));
  camera.matrixWorld.copy(camera.matrix);
  camera.matrixWorldInverse.copy(camera.matrixWorld).invert();
  camera.matrixWorldNeedsUpdate = true;
  camera.projectionMatrix.copy(rowMajor(view.projection));
  camera.projectionMatrixInverse.copy(camera.projectionMatrix).invert();
}

// The unlit base-colour pass: every material becomes a MeshBasicMaterial that keeps the
// base-colour map (sRGB, its uv channel, KHR_texture_transform and sampler as GLTFLoader set
// them), the linear base-colour factor, vertex colours and the alpha settings.
function toUnlit(material) {
  const basic = new THREE.MeshBasicMaterial({
    name: material.name,
    map: material.map ?? null,
    color: material.color ? material.color.clone() : new THREE.Color(1, 1, 1),
    vertexColors: material.vertexColors === true,
    transparent: material.transparent,
    opacity: material.opacity,
    alphaTest: material.alphaTest,
    alphaMap: material.alphaMap ?? null,
    side: material.side,
    depthWrite: material.depthWrite,
    depthTest: material.depthTest,
    blending: material.blending,
    alphaToCoverage: material.alphaToCoverage,
    toneMapped: material.toneMapped,
  });
  return basic;
}

function applyUnlit(root) {
  const cache = new Map();
  root.traverse((obj) => {
    if (!obj.isMesh) return;
    const conv = (m) => {
      if (!cache.has(m)) cache.set(m, toUnlit(m));
      return cache.get(m);
    };
    obj.material = Array.isArray(obj.material) ? obj.material.map(conv) : conv(obj.material);
  });
}

function materialSummary(root) {
  const out = [];
  const seen = new Set();
  root.traverse((obj) => {
    if (!obj.isMesh) return;
    for (const m of Array.isArray(obj.material) ? obj.material : [obj.material]) {
      if (seen.has(m)) continue;
      seen.add(m);
      out.push({ name: m.name, type: m.type, transparent: m.transparent, alphaTest: m.alphaTest,
                 side: m.side, vertexColors: m.vertexColors, map: !!m.map });
    }
  });
  return out;
}

// One WebGLRenderer (and canvas) per size, kept across requests so that compiled programs and
// PMREM-filtered environments are reused; environments are cached by the content key the driver
// sends (a hash of the .hdr bytes), so a rewritten file is filtered again.
let current = null; // {key, renderer, environments: Map(key -> WebGLRenderTarget)}

function rendererFor(width, height, antialias) {
  const key = `${width}x${height}:${antialias}`;
  if (current && current.key === key) return current;
  releaseRenderer();
  current = { key, renderer: makeRenderer(width, height, antialias), environments: new Map() };
  return current;
}

export function releaseRenderer() {
  if (!current) return;
  for (const target of current.environments.values()) target.dispose();
  current.renderer.dispose();
  current.renderer.forceContextLoss();
  current.renderer.domElement.remove();
  current = null;
}

async function environmentFor(state, url, key) {
  const cacheKey = key ?? url;
  if (!state.environments.has(cacheKey)) {
    const hdr = await new HDRLoader().loadAsync(url);
    hdr.mapping = THREE.EquirectangularReflectionMapping;
    const pmrem = new THREE.PMREMGenerator(state.renderer);
    state.environments.set(cacheKey, pmrem.fromEquirectangular(hdr));
    pmrem.dispose();
    hdr.dispose();
  }
  return state.environments.get(cacheKey).texture;
}

async function loadScene(spec, state) {
  const gltf = await new GLTFLoader().loadAsync(spec.model);
  const scene = new THREE.Scene();
  scene.background = null;
  scene.add(gltf.scene);
  if (spec.mode === 'unlit') {
    applyUnlit(gltf.scene);
  } else if (spec.mode === 'lit') {
    if (spec.environment) {
      scene.environment = await environmentFor(state, spec.environment, spec.environmentKey);
      scene.environmentIntensity = spec.environmentIntensity ?? 1.0;
    }
  } else {
    throw new Error(`unknown mode ${spec.mode}; expected 'unlit' or 'lit'`);
  }
  scene.updateMatrixWorld(true);
  return { scene, gltf };
}

function readPixels(renderer, width, height) {
  const gl = renderer.getContext();
  const buf = new Uint8Array(width * height * 4);
  gl.bindFramebuffer(gl.FRAMEBUFFER, null);
  gl.readPixels(0, 0, width, height, gl.RGBA, gl.UNSIGNED_BYTE, buf);
  // flip rows: GL's origin is bottom-left, images are top-to-bottom
  const row = width * 4;
  const out = new Uint8Array(buf.length);
  for (let y = 0; y < height; y++) out.set(buf.subarray((height - 1 - y) * row, (height - y) * row), y * row);
  return out;
}

function toBase64(bytes) {
  let s = '';
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) s += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
  return btoa(s);
}

function disposeScene(loaded) {
  const keep = loaded.scene.environment;
  loaded.scene.traverse((obj) => {
    if (obj.geometry) obj.geometry.dispose();
    if (obj.material) for (const m of [].concat(obj.material)) {
      for (const v of Object.values(m)) if (v && v.isTexture && v !== keep) v.dispose();
      m.dispose();
    }
  });
}

/**
 * spec: {model: url, environment: url|null, mode: 'unlit'|'lit', toneMappings: ['none'|'aces'|'neutral', ...],
 *        exposure: number, width, height, antialias: bool, views: [{projection, matrixWorld}]}
 * One load serves every tone mapping and view; the PMREM of an environment is made once per session.
 * returns {revision, width, height, materials, pixels: {toneMapping: [base64 RGBA per view]}}
 */
export async function render(spec) {
  const { width, height } = spec;
  const toneMappings = spec.toneMappings ?? ['none'];
  for (const t of toneMappings) if (TONE_MAPPING[t] === undefined) throw new Error(`unknown toneMapping ${t}`);
  const t0 = performance.now();
  const state = rendererFor(width, height, spec.antialias ?? true);
  const renderer = state.renderer;
  renderer.toneMappingExposure = spec.exposure ?? 1.0;
  const loaded = await loadScene(spec, state);
  const t1 = performance.now();
  const camera = new THREE.PerspectiveCamera();
  const pixels = {};
  try {
    for (const t of toneMappings) {
      renderer.toneMapping = TONE_MAPPING[t];
      pixels[t] = [];
      for (const view of spec.views) {
        setCamera(camera, view);
        renderer.clear(true, true, true);
        renderer.render(loaded.scene, camera);
        pixels[t].push(toBase64(readPixels(renderer, width, height)));
      }
    }
    const seconds = { load: (t1 - t0) / 1000, render: (performance.now() - t1) / 1000 };
    return { revision: THREE.REVISION, width, height, materials: materialSummary(loaded.scene), pixels, seconds };
  } finally {
    disposeScene(loaded);
  }
}

function unmaskedRenderer(gl) {
  const ext = gl.getExtension('WEBGL_debug_renderer_info');
  return ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
}

/**
 * Frames per second of three.js on one model: `frames` renders of the given views in turn, each
 * followed by gl.finish() and a 1-pixel readPixels so GPU (SwiftShader) work is inside the timing.
 * spec: as render() plus {frames, warmup}. returns {fps, frames, seconds, triangles, revision}
 */
export async function bench(spec) {
  const { width, height } = spec;
  const state = rendererFor(width, height, spec.antialias ?? true);
  const renderer = state.renderer;
  renderer.toneMapping = TONE_MAPPING[(spec.toneMappings ?? ['none'])[0]];
  renderer.toneMappingExposure = spec.exposure ?? 1.0;
  const loaded = await loadScene(spec, state);
  const camera = new THREE.PerspectiveCamera();
  const gl = renderer.getContext();
  const px = new Uint8Array(4);
  const frame = (i) => {
    setCamera(camera, spec.views[i % spec.views.length]);
    renderer.render(loaded.scene, camera);
    gl.finish();
    gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
  };
  try {
    for (let i = 0; i < (spec.warmup ?? 3); i++) frame(i);
    const t0 = performance.now();
    for (let i = 0; i < spec.frames; i++) frame(i);
    const seconds = (performance.now() - t0) / 1000;
    return { fps: spec.frames / seconds, frames: spec.frames, seconds, triangles: renderer.info.render.triangles,
             revision: THREE.REVISION, renderer: unmaskedRenderer(gl) };
  } finally {
    disposeScene(loaded);
  }
}
