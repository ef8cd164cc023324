// AR placement: a viewer-space hit-test source shows a reticle on detected surfaces; the first hit
// (or a select on empty space) places the placement root there, and an anchor (when the runtime has
// the 'anchors' feature) keeps it there while the user and the tracking move.
import * as THREE from 'three';

export class ARPlacement {
  constructor(renderer, root, scene) {
    this.renderer = renderer;
    this.root = root;
    this.reticle = new THREE.Mesh(
      new THREE.RingGeometry(0.08, 0.1, 32).rotateX(-Math.PI / 2),
      new THREE.MeshBasicMaterial({ color: 0xffffff }),
    );
    this.reticle.matrixAutoUpdate = false;
    this.reticle.visible = false;
    scene.add(this.reticle);
    this.source = null;
    this.lastHit = null;
    this.anchor = null;
    this.placed = false;
    this.placeRequested = false;
    this.hits = 0;
    this.stable = 0;
    this.lastHitPosition = null;
  }

  async begin(session) {
    this.root.visible = false;
    this.placed = false;
    this.anchor = null;
    const viewer = await session.requestReferenceSpace('viewer');
    this.source = await session.requestHitTestSource({ space: viewer });
  }

  end() {
    this.source?.cancel?.();
    this.source = null;
    this.anchor?.delete?.();
    this.anchor = null;
    this.reticle.visible = false;
    this.root.visible = true;
  }

  requestPlace() { this.placeRequested = true; }

  update(frame) {
    if (!frame || !this.source) return;
    const ref = this.renderer.xr.getReferenceSpace();
    const results = frame.getHitTestResults(this.source);
    if (results.length) {
      const pose = results[0].getPose(ref);
      if (pose) {
        this.hits += 1;
        this.lastHit = results[0];
        this.reticle.visible = true;
        this.reticle.matrix.fromArray(pose.transform.matrix);
        const p = pose.transform.position;
        const prev = this.lastHitPosition;
        this.stable = prev && Math.hypot(p.x - prev[0], p.y - prev[1], p.z - prev[2]) < 0.02 ? this.stable + 1 : 0;
        this.lastHitPosition = [p.x, p.y, p.z];
        // auto-place once the surface hit has been steady for a few frames; a select re-places
        if ((!this.placed && this.stable >= 5) || this.placeRequested) this.place(frame, ref, pose);
      }
    } else {
      this.reticle.visible = false;
    }
    if (this.anchor && frame.trackedAnchors?.has(this.anchor)) {
      const pose = frame.getPose(this.anchor.anchorSpace, ref);
      if (pose) {
        this.anchorPosition = [pose.transform.position.x, pose.transform.position.y, pose.transform.position.z];
        this.setRoot(pose.transform.matrix);
      }
    }
  }

  place(frame, ref, pose) {
    this.placeRequested = false;
    this.placed = true;
    this.root.visible = true;
    this.setRoot(pose.transform.matrix);
    this.anchor?.delete?.();
    this.anchor = null;
    // Anchor the hit pose in the reference space (XRFrame.createAnchor): the runtime then keeps
    // correcting it as its tracking refines; without 'anchors' the placement stays as placed.
    if (frame.createAnchor) {
      frame.createAnchor(pose.transform, ref).then((a) => { this.anchor = a; }).catch(() => {});
    }
  }

  setRoot(m16) {
    const m = new THREE.Matrix4().fromArray(m16);
    const p = new THREE.Vector3();
    const q = new THREE.Quaternion();
    const s = new THREE.Vector3();
    m.decompose(p, q, s);
    // keep the asset upright: only the yaw of the surface pose
    const yaw = new THREE.Euler().setFromQuaternion(q, 'YXZ').y;
    this.root.position.copy(p);
    this.root.rotation.set(0, yaw, 0);
  }
}
