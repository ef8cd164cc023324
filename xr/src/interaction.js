// Controller interaction in an immersive session: grab (squeeze or select) moves and rotates an
// asset with the controller, a second hand on the same asset scales it by the hands' distance,
// the thumbstick scales while grabbing, A/X or B/Y resets, and the left/right thumbsticks move or
// snap-turn the placement root (locomotion) when nothing is grabbed. Edits go back to the studio
// as `transform` messages so every headset and the studio see the same placement.
import * as THREE from 'three';

const _m = new THREE.Matrix4();
const _inv = new THREE.Matrix4();
const _s = new THREE.Vector3();
const SEND_INTERVAL_MS = 33;
const UP = new THREE.Vector3(0, 1, 0);

export class Interaction {
  constructor(renderer, root, assets, stream, { onSelectEmpty = null } = {}) {
    this.renderer = renderer;
    this.root = root;
    this.assets = assets;
    this.stream = stream;
    this.onSelectEmpty = onSelectEmpty;
    this.hands = [0, 1].map((i) => this.makeController(i));
    this.lastSend = new Map();
    this.prevButtons = [[], []];
    this.grabs = 0; // number of grabs started (for tests)
    this.locomotion = true; // thumbstick move/turn (off in AR: the room is real)
  }

  makeController(i) {
    const xr = this.renderer.xr;
    const ray = xr.getController(i);
    const grip = xr.getControllerGrip(i);
    const h = { i, ray, grip, source: null, grab: null };
    const pointer = new THREE.Line(
      new THREE.BufferGeometry().setFromPoints([new THREE.Vector3(0, 0, 0), new THREE.Vector3(0, 0, -1)]),
      new THREE.LineBasicMaterial({ color: 0xffffff }),
    );
    pointer.scale.z = 0.3;
    ray.add(pointer);
    ray.addEventListener('connected', (e) => { h.source = e.data; });
    ray.addEventListener('disconnected', () => { this.release(h); h.source = null; });
    const start = (kind) => () => this.start(h, kind);
    ray.addEventListener('squeezestart', start('squeeze'));
    ray.addEventListener('selectstart', start('select'));
    ray.addEventListener('squeezeend', () => this.release(h, 'squeeze'));
    ray.addEventListener('selectend', () => this.release(h, 'select'));
    return h;
  }

  addTo(scene) {
    for (const h of this.hands) { scene.add(h.ray); scene.add(h.grip); }
  }

  isGrabbing(id) { return this.hands.some((h) => h.grab && h.grab.id === id); }

  /** The asset the controller touches (box within 10 cm of the grip) or points at (ray hits its box). */
  pick(h) {
    h.grip.updateWorldMatrix(true, false);
    h.ray.updateWorldMatrix(true, false);
    const gripPos = new THREE.Vector3().setFromMatrixPosition(h.grip.matrixWorld);
    let best = null;
    let bestD = Infinity;
    const ray = new THREE.Ray().applyMatrix4(h.ray.matrixWorld);
    ray.origin.setFromMatrixPosition(h.ray.matrixWorld);
    ray.direction.set(0, 0, -1).transformDirection(h.ray.matrixWorld);
    for (const [id, e] of this.assets.assets) {
      if (!e.holder.visible) continue;
      const box = this.assets.box(id);
      if (box.isEmpty()) continue;
      const d = box.distanceToPoint(gripPos);
      if (d < 0.1 && d < bestD) { best = id; bestD = d; continue; }
      const hit = ray.intersectBox(box, new THREE.Vector3());
      if (hit) {
        const dr = hit.distanceTo(ray.origin) + 0.1;
        if (dr < bestD) { best = id; bestD = dr; }
      }
    }
    return best;
  }

  start(h, kind) {
    if (h.grab) return;
    const id = this.pick(h);
    if (id === null) {
      if (kind === 'select' && this.onSelectEmpty) this.onSelectEmpty(h);
      return;
    }
    const e = this.assets.assets.get(id);
    const other = this.hands.find((o) => o !== h && o.grab && o.grab.id === id);
    if (other) {
      // second hand: scale by the change of distance between the hands
      h.grab = { id, kind, second: true, d0: this.handDistance(), s0: e.holder.scale.clone() };
    } else {
      e.holder.updateWorldMatrix(true, false);
      h.grip.updateWorldMatrix(true, false);
      const offset = new THREE.Matrix4().copy(h.grip.matrixWorld).invert().multiply(e.holder.matrixWorld);
      h.grab = { id, kind, second: false, offset };
    }
    this.grabs += 1;
  }

  release(h, kind) {
    if (!h.grab || (kind && h.grab.kind !== kind)) return;
    const { id } = h.grab;
    h.grab = null;
    // The hand still holding the asset (if any) becomes the only, primary one; its offset is
    // taken afresh so the scale the two hands set is kept.
    const other = this.hands.find((o) => o.grab && o.grab.id === id);
    const e = this.assets.assets.get(id);
    if (other && e) {
      e.holder.updateWorldMatrix(true, false);
      other.grip.updateWorldMatrix(true, false);
      other.grab = { id, kind: other.grab.kind, second: false, offset: new THREE.Matrix4().copy(other.grip.matrixWorld).invert().multiply(e.holder.matrixWorld) };
    }
    if (this.assets.assets.has(id)) this.send(id, true);
  }

  handDistance() {
    const a = new THREE.Vector3().setFromMatrixPosition(this.hands[0].grip.matrixWorld);
    const b = new THREE.Vector3().setFromMatrixPosition(this.hands[1].grip.matrixWorld);
    return Math.max(a.distanceTo(b), 1e-3);
  }

  send(id, force = false) {
    const now = performance.now();
    if (!force && now - (this.lastSend.get(id) || 0) < SEND_INTERVAL_MS) return;
    this.lastSend.set(id, now);
    const m = this.assets.transformOf(id);
    this.assets.assets.get(id).info.transform = m;
    this.stream.send({ type: 'transform', id, matrix: m });
  }

  reset() {
    for (const [id, e] of this.assets.assets) {
      if (!e.initialTransform) continue;
      this.assets.setTransform(id, e.initialTransform);
      this.send(id, true);
    }
  }

  update(dt) {
    this.root.updateWorldMatrix(true, false);
    _inv.copy(this.root.matrixWorld).invert();
    for (const h of this.hands) {
      if (!h.grab || h.grab.second) continue;
      const e = this.assets.assets.get(h.grab.id);
      if (!e) { h.grab = null; continue; }
      h.grip.updateWorldMatrix(true, false);
      _m.copy(h.grip.matrixWorld).multiply(h.grab.offset);
      _m.premultiply(_inv).decompose(e.holder.position, e.holder.quaternion, _s);
      const second = this.hands.find((o) => o !== h && o.grab && o.grab.second && o.grab.id === h.grab.id);
      if (second) {
        e.holder.scale.copy(second.grab.s0).multiplyScalar(this.handDistance() / second.grab.d0);
      } else {
        e.holder.scale.copy(_s);
      }
      const stick = h.source?.gamepad?.axes;
      if (stick && stick.length >= 4 && Math.abs(stick[3]) > 0.2) {
        const f = Math.exp(-stick[3] * dt); // push up (negative y) to grow
        e.holder.scale.multiplyScalar(f);
        h.grab.offset.multiply(new THREE.Matrix4().makeScale(f, f, f));
      }
      this.send(h.grab.id);
    }
    // buttons: A/X (4) or B/Y (5) reset; thumbsticks move/turn when the hand grabs nothing
    for (const h of this.hands) {
      const gp = h.source?.gamepad;
      if (!gp) continue;
      const pressed = gp.buttons.map((b) => b.pressed);
      const prev = this.prevButtons[h.i];
      if ((pressed[4] && !prev[4]) || (pressed[5] && !prev[5])) this.reset();
      this.prevButtons[h.i] = pressed;
      if (h.grab || gp.axes.length < 4 || !this.locomotion) continue;
      const [x, y] = [gp.axes[2], gp.axes[3]];
      const cam = this.renderer.xr.getCamera();
      // the head: between the eyes (three's XR camera itself sits behind them to span both frusta)
      const eyes = cam.cameras && cam.cameras.length ? cam.cameras : [cam];
      const head = new THREE.Vector3();
      for (const e of eyes) head.add(new THREE.Vector3().setFromMatrixPosition(e.matrixWorld));
      head.divideScalar(eyes.length);
      if (h.source.handedness === 'left' && Math.hypot(x, y) > 0.2) {
        // glide where the head looks (horizontal): the world moves the other way
        const fwd = new THREE.Vector3(0, 0, -1).transformDirection(cam.matrixWorld).setY(0);
        if (fwd.lengthSq() < 1e-6) fwd.set(0, 0, -1);
        fwd.normalize();
        const right = new THREE.Vector3(-fwd.z, 0, fwd.x);
        const move = right.multiplyScalar(x).addScaledVector(fwd, -y).multiplyScalar(dt * 1.5);
        this.root.position.sub(move);
      } else if (h.source.handedness === 'right') {
        if (Math.abs(x) > 0.7 && !h.turned) {
          // snap-turn the user by 30 degrees: the world turns the other way around the head
          const a = Math.sign(x) * Math.PI / 6;
          const pivot = head.setY(0);
          this.root.position.sub(pivot).applyAxisAngle(UP, a).add(pivot);
          this.root.quaternion.premultiply(new THREE.Quaternion().setFromAxisAngle(UP, a));
          h.turned = true;
        } else if (Math.abs(x) < 0.3) h.turned = false;
      }
    }
  }
}
