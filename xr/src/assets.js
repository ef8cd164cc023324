// The scene's assets in three.js: one holder Group per stream asset (its matrix is the stream's
// transform, metres, +Y up) holding a glTF scene (GLTFLoader + KTX2/Draco/Meshopt) or a Spark SplatMesh.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { KTX2Loader } from 'three/addons/loaders/KTX2Loader.js';
import { DRACOLoader } from 'three/addons/loaders/DRACOLoader.js';
import { MeshoptDecoder } from 'three/addons/libs/meshopt_decoder.module.js';
import { SplatMesh } from '@sparkjsdev/spark';

export class AssetManager {
  constructor(root, renderer, { token = null, base = '' } = {}) {
    this.root = root;
    this.token = token;
    this.base = base;
    this.assets = new Map(); // id -> {holder, info, content, materials: [{mat, orig}], splat}
    this.loader = new GLTFLoader();
    const ktx2 = new KTX2Loader().setTranscoderPath('./libs/basis/').detectSupport(renderer);
    const draco = new DRACOLoader().setDecoderPath('./libs/draco/');
    this.loader.setKTX2Loader(ktx2).setDRACOLoader(draco).setMeshoptDecoder(MeshoptDecoder);
    this.generation = new Map(); // id -> load counter, so a stale load never replaces a newer one
  }

  url(info) {
    let u = this.base + info.url;
    if (this.token) u += (u.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(this.token);
    return u;
  }

  /** Replace everything with a snapshot's assets (kept: those whose id+rev did not change). */
  async applySnapshot(list) {
    const keep = new Set(list.map((a) => a.id));
    for (const id of [...this.assets.keys()]) if (!keep.has(id)) this.remove(id);
    await Promise.all(list.map((info) => {
      const cur = this.assets.get(info.id);
      if (cur && cur.info.rev === info.rev) {
        this.setTransform(info.id, info.transform);
        this.setVisible(info.id, info.visible);
        cur.info.material = {};
        this.setMaterial(info.id, info.material);
        return Promise.resolve();
      }
      return this.add(info);
    }));
  }

  async add(info) {
    const gen = (this.generation.get(info.id) || 0) + 1;
    this.generation.set(info.id, gen);
    let content;
    let materials = [];
    let splat = null;
    if (info.kind === 'splats') {
      // the file type from the name (the URL has ?rev=…&token=…): .splat has no magic to sniff
      const ext = info.url.split('?')[0].split('.').pop().toLowerCase();
      const fileType = ['ply', 'spz', 'splat', 'ksplat'].includes(ext) ? ext : undefined;
      splat = new SplatMesh({ url: this.url(info), fileType });
      await splat.initialized;
      content = splat;
    } else {
      const gltf = await this.loader.loadAsync(this.url(info));
      content = gltf.scene;
      const seen = new Map();
      content.traverse((o) => {
        if (!o.isMesh) return;
        const list = Array.isArray(o.material) ? o.material : [o.material];
        const cloned = list.map((m) => {
          if (!seen.has(m)) {
            const c = m.clone();
            seen.set(m, c);
            materials.push({
              mat: c,
              orig: { color: c.color?.clone(), opacity: c.opacity, transparent: c.transparent, metalness: c.metalness, roughness: c.roughness, emissive: c.emissive?.clone() },
            });
          }
          return seen.get(m);
        });
        o.material = Array.isArray(o.material) ? cloned : cloned[0];
      });
    }
    if (this.generation.get(info.id) !== gen) { dispose(content); return; } // superseded meanwhile
    const old = this.assets.get(info.id);
    const holder = old?.holder ?? new THREE.Group();
    if (old) { holder.remove(old.content); dispose(old.content); }
    holder.name = `asset:${info.id}`;
    holder.add(content);
    this.root.add(holder);
    const entry = { holder, info: { ...info, material: {} }, content, materials, splat };
    this.assets.set(info.id, entry);
    this.setTransform(info.id, info.transform);
    this.setVisible(info.id, info.visible);
    this.setMaterial(info.id, info.material || {});
    entry.initialTransform = info.transform.slice();
    return entry;
  }

  remove(id) {
    const e = this.assets.get(id);
    this.generation.set(id, (this.generation.get(id) || 0) + 1);
    if (!e) return;
    this.root.remove(e.holder);
    dispose(e.content);
    this.assets.delete(id);
  }

  setTransform(id, m16) {
    const e = this.assets.get(id);
    if (!e) return;
    e.info.transform = m16.slice();
    new THREE.Matrix4().fromArray(m16).decompose(e.holder.position, e.holder.quaternion, e.holder.scale);
  }

  /** The holder's transform (relative to the placement root) as 16 column-major numbers. */
  transformOf(id) {
    const e = this.assets.get(id);
    e.holder.updateMatrix();
    return e.holder.matrix.toArray();
  }

  setVisible(id, visible) {
    const e = this.assets.get(id);
    if (e) { e.holder.visible = !!visible; e.info.visible = !!visible; }
  }

  /** Material overrides (linear): base_color RGBA, metallic, roughness, emissive RGB; cumulative unless `reset`. */
  setMaterial(id, upd, reset = false) {
    const e = this.assets.get(id);
    if (!e) return;
    if (reset) e.info.material = {};
    Object.assign(e.info.material, upd);
    const m = e.info.material;
    for (const { mat, orig } of e.materials) {
      const transparent = m.base_color ? m.base_color[3] < 1 || orig.transparent : orig.transparent;
      if (mat.transparent !== transparent) { mat.transparent = transparent; mat.needsUpdate = true; }
      if (m.base_color) {
        mat.color.setRGB(m.base_color[0], m.base_color[1], m.base_color[2], THREE.LinearSRGBColorSpace);
        mat.opacity = m.base_color[3];
      } else if (orig.color) { mat.color.copy(orig.color); mat.opacity = orig.opacity; }
      if ('metalness' in mat) mat.metalness = m.metallic ?? orig.metalness;
      if ('roughness' in mat) mat.roughness = m.roughness ?? orig.roughness;
      if (mat.emissive) {
        if (m.emissive) mat.emissive.setRGB(m.emissive[0], m.emissive[1], m.emissive[2], THREE.LinearSRGBColorSpace);
        else if (orig.emissive) mat.emissive.copy(orig.emissive);
      }
    }
    if (e.splat) {
      const c = m.base_color || [1, 1, 1, 1];
      e.splat.recolor = new THREE.Color().setRGB(c[0], c[1], c[2], THREE.LinearSRGBColorSpace);
      e.splat.opacity = c[3];
    }
  }

  /** World-space bounding box of an asset (for grabbing and framing). */
  box(id) {
    const e = this.assets.get(id);
    const b = new THREE.Box3();
    if (!e) return b;
    if (e.splat) {
      const local = e.splat.getBoundingBox ? e.splat.getBoundingBox() : new THREE.Box3(new THREE.Vector3(-0.5, -0.5, -0.5), new THREE.Vector3(0.5, 0.5, 0.5));
      e.holder.updateWorldMatrix(true, false);
      return local.clone().applyMatrix4(e.splat.matrixWorld);
    }
    return b.setFromObject(e.holder);
  }
}

function dispose(obj) {
  obj.traverse?.((o) => {
    o.geometry?.dispose?.();
    const ms = Array.isArray(o.material) ? o.material : o.material ? [o.material] : [];
    for (const m of ms) {
      for (const v of Object.values(m)) if (v && v.isTexture) v.dispose();
      m.dispose();
    }
  });
  obj.dispose?.();
}
