"""Object isolation (pipelines/object_isolation.py) on exact depth: a cylinder standing on a wide
table slab, seen from two rings above the table as a photo capture would be. The table is found
as the support plane and removed, the footprint capped, and the result is a single watertight
mesh that matches the cylinder; with no support in view (a floating sphere) the object is closed
as is."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from studio.assets import Asset, Mesh
from studio.errors import EmptyResultError
from studio.pipelines.mesh_extract import decimate
from studio.pipelines.metrics import chamfer
from studio.pipelines.object_isolation import depth_points, find_support_plane, isolate_object
from studio.pipelines.procedural import SampleParams, sample_asset
from studio.pipelines.views_render import render_views, view_rig


def _capture(with_table: bool):
    """(ground-truth Mesh, cameras, oriented depth points) of the object (+ table)."""
    if with_table:
        obj = trimesh.creation.cylinder(radius=0.2, height=0.5, sections=64)
        obj.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))  # axis along +Y
        obj.apply_translation((0.0, -obj.bounds[0][1], 0.0))  # base on y = 0
        slab = trimesh.creation.box(extents=(2.0, 0.05, 2.0))
        slab.apply_translation((0.0, -0.025, 0.0))
        meshes = [Mesh.from_arrays(obj.vertices, obj.faces), Mesh.from_arrays(slab.vertices, slab.faces)]
    else:
        obj = sample_asset(SampleParams(texture_size=32)).meshes[0].geometry
        meshes = [Mesh.from_arrays(obj.vertices, obj.faces)]
    cams = view_rig(Asset(meshes=meshes[:1]), 10, 128, elevations=(20.0, 50.0), margin=1.6)
    _, depth = render_views(Asset(meshes=meshes), cams)
    pts, nrm = depth_points(depth, cams, stride=2)
    keep = np.linalg.norm(pts - obj.centroid, axis=1) < 0.9  # the meshing bounds: around the subject
    return meshes[0], cams, pts[keep], nrm[keep]


def test_table_is_removed_and_the_object_closed() -> None:
    truth, cams, pts, nrm = _capture(with_table=True)
    plane = find_support_plane(pts, cams, 0.01)
    assert plane is not None and abs(plane.normal[1]) > 0.99 and abs(plane.offset) < 0.01
    mesh = isolate_object(pts, nrm, cams, spacing=0.01)
    g = mesh.geometry
    assert g.is_watertight and g.volume > 0
    ext = np.ptp(mesh.vertices, axis=0)
    assert np.all(ext < 0.6)  # the 2 m table is gone; the cylinder is 0.4 × 0.5 × 0.4 m
    c = chamfer(mesh, truth, n=20_000)
    print(f"isolated cylinder: Chamfer {c.chamfer / c.diagonal:.2%} of the diagonal, F {c.fscore:.3f}, extent {ext.round(3)}")
    assert c.chamfer < 0.01 * c.diagonal and c.fscore > 0.8
    low = decimate(mesh, 2000)  # the exported mesh stays closed
    assert len(low.faces) <= 2000 and low.geometry.is_watertight and low.geometry.volume > 0


def test_without_a_support_the_object_is_closed_as_is() -> None:
    truth, cams, pts, nrm = _capture(with_table=False)
    assert find_support_plane(pts, cams, 0.01) is None  # a sphere has no dominant plane
    mesh = isolate_object(pts, nrm, cams, spacing=0.01)
    assert mesh.geometry.is_watertight
    c = chamfer(mesh, truth, n=20_000)
    print(f"closed sphere: Chamfer {c.chamfer / c.diagonal:.2%} of the diagonal, F {c.fscore:.3f}")
    assert c.chamfer < 0.02 * c.diagonal  # the unseen bottom cap is a guess


def test_nothing_above_the_table_is_an_error() -> None:
    _, cams, pts, nrm = _capture(with_table=True)
    plane = find_support_plane(pts, cams, 0.01)
    flat = plane.height(pts) < 0.005
    with pytest.raises(EmptyResultError, match="above the support plane"):
        isolate_object(pts[flat], nrm[flat], cams, spacing=0.01)
