"""`faceage train prototypes`: the builder on real aligned faces, its cache, its files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faceage.errors import DatasetError, FaceageError, ModelFileError
from faceage.models.prototypes import BINS, GENDERS, POOLED, PrototypeSet, bin_of
from faceage.training.prototype_builder import BuildOptions, build, mean_shape, procrustes_to


def test_bins_cover_every_age():
    assert [bin_of(a) for a in (0, 2, 3, 9, 10, 19, 20, 59, 60, 79, 80, 116)] == [0, 0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 11]


def test_procrustes_undoes_a_similarity():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(30, 2)) * 10 + 100
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -3.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (ref @ rot.T) * scale + shift
    np.testing.assert_allclose(procrustes_to(moved[None], ref)[0], ref, atol=1e-6)
    mean, aligned = mean_shape(np.stack([ref, moved]))
    np.testing.assert_allclose(aligned[0], aligned[1], atol=1e-6)


def test_build_gives_complete_cells_and_round_trips(tiny_prototypes, tmp_path):
    p = tiny_prototypes
    assert p.cell_index.shape == (len(GENDERS), POOLED + 1, len(BINS))
    assert (p.cell_index[:, :POOLED] == p.cell_index[:, POOLED:]).all()  # min_cell 1000: only pooled cells
    assert np.all(np.diff(p.centres) > 0)
    assert p.shapes.shape[1:] == (478, 2) and np.isfinite(p.colour).all() and (p.energy >= 0).all()
    assert p.info["faces"] > 20 and p.info["borrowed_bins"]  # 48 faces cannot fill 24 cells
    path = p.save(tmp_path / "protos.safetensors")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["format"] == "faceage-prototypes" and len(meta["cells"]) == p.shapes.shape[0]
    q = PrototypeSet.load(path)
    np.testing.assert_allclose(q.shapes, p.shapes, atol=0.1)  # fp16 storage
    np.testing.assert_array_equal(q.cell_index, p.cell_index)
    mix = [(0, POOLED, 1.0)]
    np.testing.assert_allclose(q.shape_at(30, mix), p.shape_at(30, mix), atol=0.1)


def test_age_weights_interpolate_between_centres(tiny_prototypes):
    p = tiny_prototypes
    c = p.centres
    assert p.age_weights(c[3]) == [(3, 1.0)]
    mid = p.age_weights((c[3] + c[4]) / 2)
    assert [b for b, _ in mid] == [3, 4] and np.allclose([w for _, w in mid], 0.5)
    assert p.age_weights(-5) == [(0, 1.0)] and p.age_weights(500) == [(len(c) - 1, 1.0)]


@pytest.mark.slow  # seconds of subprocesses or real models: `make test` runs it, `make test-fast` does not
def test_rebuild_reuses_the_cache_and_gives_the_same_prototypes(tiny_faces256, tmp_path):
    run = tmp_path / "run"
    a = build(tiny_faces256, run, BuildOptions(min_cell=1000, pca=16), progress=False)
    cached = sorted((run / "cache").iterdir())
    assert cached
    mtimes = [f.stat().st_mtime_ns for f in cached]
    b = build(tiny_faces256, run, BuildOptions(min_cell=1000, pca=16), progress=False)
    assert [f.stat().st_mtime_ns for f in sorted((run / "cache").iterdir())] == mtimes
    np.testing.assert_allclose(a.colour, b.colour)
    np.testing.assert_allclose(a.shapes, b.shapes)


def test_build_refuses_other_sizes_and_unprepared_folders(tiny_faces256, tmp_path):
    with pytest.raises(FaceageError, match="256 px faces"):
        build(tiny_faces256, tmp_path / "r", BuildOptions(size=128), progress=False)
    with pytest.raises(DatasetError, match="not a finished prepared folder"):
        build(tmp_path, tmp_path / "r", progress=False)


def test_load_refuses_missing_and_foreign_files(tmp_path, tiny_prototypes):
    with pytest.raises(ModelFileError, match="missing"):
        PrototypeSet.load(tmp_path / "none.safetensors")
    path = tiny_prototypes.save(tmp_path / "p.safetensors")
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["format"] = "something-else"
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="not a faceage-prototypes"):
        PrototypeSet.load(path)
