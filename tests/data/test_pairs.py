"""``faceage data pairs``: the default method's outputs on training faces, as shards with their flows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from faceage.data.pairs_commands import FLOW_SIDE, MIN_GAP, draw_pairs, make_pairs, pairs_command
from faceage.data.shards import MANIFEST, ShardReader, decode_array


def test_draw_is_seeded_balanced_and_keeps_a_gap():
    ages = np.concatenate([np.full(900, 28.0), np.full(50, 5.0), np.full(50, 75.0)])
    chosen, targets = draw_pairs(ages, 200, seed=1)
    again = draw_pairs(ages, 200, seed=1)
    assert np.array_equal(chosen, again[0]) and np.array_equal(targets, again[1])
    assert len(set(chosen.tolist())) == 200
    assert (np.abs(targets - ages[chosen]) >= MIN_GAP).all()
    # decade balancing: the 10 % children and old are far more than 10 % of the draw
    assert (ages[chosen] != 28.0).mean() > 0.25
    assert len(draw_pairs(ages[:10], 50, seed=0)[0]) == 10  # never more than the faces


def test_pairs_hold_the_method_output_flow_and_ages(tiny_pairs, tiny_faces256):
    manifest = json.loads((tiny_pairs / MANIFEST).read_text())
    assert manifest["pairs"] == 8 and manifest["teacher"]["method"] == "prototype"
    assert manifest["teacher"]["loop"] is False
    assert manifest["code_version"]["faceage"]  # which teacher code made them
    sources = {key: image for key, image, _ in ShardReader(tiny_faces256, "train")}
    for key, image, labels in ShardReader(tiny_pairs, "train"):
        assert labels["source_key"] == key and key in sources
        assert image.shape == sources[key].shape
        assert abs(labels["target_age"] - labels["age"]) >= MIN_GAP
        flow = decode_array(labels["flow"], (FLOW_SIDE, FLOW_SIDE, 2))
        mask = decode_array(labels["mask"], (FLOW_SIDE, FLOW_SIDE))
        assert np.isfinite(flow).all() and np.abs(flow).max() < 64
        assert 0.0 <= mask.min() and mask.max() <= 1.0 + 1e-3 and mask.mean() > 0.1
        # the method changed the face
        assert np.abs(image.astype(int) - sources[key].astype(int)).mean() > 0.5


def test_resume_skips_what_is_made_and_refuses_a_full_folder(tiny_pairs, tmp_path):
    import shutil

    copy = tmp_path / "pairs"
    shutil.copytree(tiny_pairs, copy)
    (copy / MANIFEST).unlink()  # as an interrupted run leaves it
    said: list[str] = []
    manifest = make_pairs(
        _data_of(tiny_pairs),
        copy,
        8,
        workers=1,
        options={"loop": False},
        weights=tiny_pairs.parent / "prototypes.safetensors",
        resume=True,
        echo=said.append,
    )
    assert "8 already made, 0 to make" in said[0] and manifest["pairs"] == 8
    assert manifest["last_run"]["pairs"] == 0
    result = CliRunner().invoke(pairs_command, ["--data", str(_data_of(tiny_pairs)), "--out", str(copy)])
    assert result.exit_code != 0 and "--resume" in result.output


def _data_of(pairs):
    from pathlib import Path

    return Path(json.loads((pairs / MANIFEST).read_text())["data"])


def test_a_method_that_cannot_start_is_reported(tiny_faces256, tmp_path):
    with pytest.raises(Exception, match="prototype|weights"):
        make_pairs(tiny_faces256, tmp_path / "p", 2, workers=1, weights=tmp_path / "missing.safetensors")
