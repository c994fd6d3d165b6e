"""Age regressor: shapes and range, resizing, determinism, gradients to the input, strict fp16 save/load."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from faceage.errors import ModelFileError
from faceage.models.age_regressor import (
    AgeOutput,
    AgeRegressor,
    AgeRegressorConfig,
    age_loss,
    count_parameters,
    expected_age,
    gaussian_age_targets,
    group_log_probs,
)
from faceage.models.io import flat_config_path as config_path_for
from faceage.models.io import load_age_regressor, save_age_regressor

# Narrow and shallow: the same code paths as the shipped config at a fraction of the cost.
TINY = AgeRegressorConfig(input_size=64, stem_channels=8, channels=(8, 16), blocks=(1, 1), max_age=100)


def _model(config: AgeRegressorConfig = TINY, seed: int = 0) -> AgeRegressor:
    torch.manual_seed(seed)
    return AgeRegressor(config).eval()


def _images(b: int = 2, size: int = 64, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g) * 2 - 1


def test_default_config_is_small_enough_to_ship():
    model = AgeRegressor()
    n = count_parameters(model)
    assert 1_000_000 <= n <= 3_000_000
    assert n * 2 < 8 * 2**20  # fp16 file under 8 MB
    assert model.cfg.num_bins == 101


@pytest.mark.parametrize("size", [64, 100, 128, 256])
def test_shapes_and_age_range_at_every_accepted_size(size):
    out = _model()(_images(3, size))
    assert out.logits.shape == (3, TINY.num_bins)
    assert out.age.shape == (3,)
    assert out.age.dtype == torch.float32
    assert bool(((out.age >= TINY.min_age) & (out.age <= TINY.max_age)).all())


def test_larger_inputs_are_resized_like_a_downsampled_copy():
    # 128 px in is (to float precision) the same as the model's own antialiased resize to 64 px.
    model = _model()
    big = _images(2, 128)
    small = torch.nn.functional.interpolate(big, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(model(big).age, model(small).age)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(3, 64, 64), "shape"),
        (torch.zeros(1, 1, 64, 64), "shape"),
        (torch.zeros(1, 3, 32, 32), "between 64 and 256"),
        (torch.zeros(1, 3, 300, 300), "between 64 and 256"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "float"),
    ],
)
def test_bad_input_raises_value_error_naming_it(bad, message):
    with pytest.raises(ValueError, match=message):
        _model()(bad)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="equal length"):
        AgeRegressorConfig(channels=(8, 16), blocks=(1,))
    with pytest.raises(ValueError, match="input_size"):
        AgeRegressorConfig(input_size=32)


def test_same_seed_same_weights_and_outputs():
    x = _images()
    with torch.no_grad():
        a, b = _model(seed=3)(x), _model(seed=3)(x)
    assert torch.equal(a.logits, b.logits)
    with torch.no_grad():
        c = _model(seed=4)(x)
    assert not torch.equal(a.logits, c.logits)


def test_gradients_reach_the_input_through_the_resize():
    # Used as a loss: d(age)/d(image) must exist and be finite at 128 px (resized inside).
    model = _model().requires_grad_(False)
    x = _images(2, 128).requires_grad_(True)
    out = model(x)
    (out.age.sum() + group_log_probs(out.logits, model.bin_ages, [21, 31, 41, 51])[:, 0].sum()).backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0


def test_input_gradient_matches_finite_differences_in_float64():
    model = _model().double().requires_grad_(False)
    x = _images(1, 64).double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: model(t).age, (x,), eps=1e-6, atol=1e-5, nondet_tol=0.0, fast_mode=True)


def test_gaussian_targets_are_distributions_centred_on_the_age():
    bins = torch.arange(0, 101, dtype=torch.float32)
    q = gaussian_age_targets(torch.tensor([5.0, 40.0, 116.0]), bins)
    torch.testing.assert_close(q.sum(-1), torch.ones(3))
    assert q.argmax(-1).tolist() == [5, 40, 100]  # 116 is clamped to the last bin
    assert float(q[0].max()) > float(q[1].max())  # narrower for a child than for an adult


def test_loss_is_small_for_a_confident_correct_prediction_and_large_otherwise():
    bins = torch.arange(0, 101, dtype=torch.float32)
    ages = torch.tensor([10.0, 60.0])
    right = torch.log(gaussian_age_targets(ages, bins) + 1e-12)
    wrong = torch.log(gaussian_age_targets(torch.tensor([60.0, 10.0]), bins) + 1e-12)
    good, parts = age_loss(AgeOutput(right, expected_age(right, bins)), ages, bins)
    bad, _ = age_loss(AgeOutput(wrong, expected_age(wrong, bins)), ages, bins)
    assert float(good) < 0.5 and float(bad) > 40 and parts["l1"] < 0.5


def test_group_log_probs_sum_the_bins():
    bins = torch.arange(0, 101, dtype=torch.float32)
    logits = torch.randn(4, 101)
    groups = group_log_probs(logits, bins, [21, 31, 41, 51])
    p = torch.softmax(logits, -1)
    torch.testing.assert_close(groups.exp().sum(-1), torch.ones(4))
    torch.testing.assert_close(groups[:, 0].exp(), p[:, :21].sum(-1))
    torch.testing.assert_close(groups[:, 4].exp(), p[:, 51:].sum(-1))
    with pytest.raises(ValueError, match="ascending"):
        group_log_probs(logits, bins, [30, 20])


def _trained_ish(tmp_path):
    model = _model()
    with torch.no_grad():  # non-trivial BN statistics, so the round trip checks buffers too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    path = save_age_regressor(model, tmp_path / "age_regressor.safetensors", {"data": "unit test"})
    return model, path


def test_save_load_round_trip_fp16_into_fp32(tmp_path):
    model, path = _trained_ish(tmp_path)
    assert path.is_file() and config_path_for(path).is_file()
    assert not list(tmp_path.glob("*.tmp"))
    stored = load_file(str(path))
    assert {t.dtype for k, t in stored.items() if "num_batches" not in k} == {torch.float16}
    doc = json.loads(config_path_for(path).read_text())
    assert doc["class"] == "AgeRegressor" and doc["training"] == {"data": "unit test"}

    loaded = load_age_regressor(path)
    assert loaded.cfg == model.cfg and not loaded.training
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    x = _images(4)
    with torch.no_grad():
        want = _model_fp16_rounded(model)(x).age
        torch.testing.assert_close(loaded(x).age, want, rtol=0, atol=1e-4)
        # and close to the fp32 original: fp16 storage costs well under 0.1 year
        assert float((loaded(x).age - model(x).age).abs().max()) < 0.1


def _model_fp16_rounded(model: AgeRegressor) -> AgeRegressor:
    copy = AgeRegressor(model.cfg).eval()
    copy.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    return copy


def test_load_is_strict_about_keys_shapes_and_files(tmp_path):
    _, path = _trained_ish(tmp_path)
    tensors = load_file(str(path))

    extra = dict(tensors, surplus=torch.zeros(1))
    save_file(extra, str(path))
    with pytest.raises(ModelFileError, match="unexpected keys: surplus"):
        load_age_regressor(path)

    missing = {k: v for k, v in tensors.items() if k != "head.bias"}
    save_file(missing, str(path))
    with pytest.raises(ModelFileError, match="missing keys: head.bias"):
        load_age_regressor(path)

    reshaped = dict(tensors, **{"head.bias": torch.zeros(7, dtype=torch.float16)})
    save_file(reshaped, str(path))
    with pytest.raises(ModelFileError, match="wrong shape"):
        load_age_regressor(path)

    path.write_bytes(b"not safetensors")
    with pytest.raises(ModelFileError, match="unreadable"):
        load_age_regressor(path)

    config_path_for(path).write_text(
        json.dumps({"format": "faceage-model", "version": 1, "class": "Generator", "config": {}})
    )
    with pytest.raises(ModelFileError, match="not an AgeRegressor config"):
        load_age_regressor(path)

    with pytest.raises(ModelFileError, match="missing"):
        load_age_regressor(tmp_path / "nowhere.safetensors")


def test_shipped_weights_are_checked_against_the_manifest(tmp_path, monkeypatch):
    from faceage import assets
    from faceage.checksum import sha256_file

    monkeypatch.setattr(assets, "WEIGHTS_DIR", tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ModelFileError, match="no entry"):
        load_age_regressor()
    model, path = _trained_ish(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({path.name: {"sha256": sha256_file(path)}}))
    assert load_age_regressor().cfg == model.cfg


# From faceage's own test split (``faceage data prepare``, split v1): one man and one woman per
# decade, the ages nearest the decade's centre. File names only; the photos stay in shared/datasets.
# Margins over what the shipped weights reached when these were set (MAE 10.9 years, r 0.89 on these
# deliberately spread faces, two of them over 90), so retrained weights must be about as good.
MAX_MAE_20_FACES = 14.0
MIN_CORR_20_FACES = 0.8

UTK_TEST_FACES = [
    "5_0_0_20170110212701465.jpg.chip.jpg",
    "5_1_0_20170109193145120.jpg.chip.jpg",
    "15_0_0_20170103200850696.jpg.chip.jpg",
    "15_1_0_20170109213511851.jpg.chip.jpg",
    "25_0_0_20170105163328603.jpg.chip.jpg",
    "25_1_0_20170116223849950.jpg.chip.jpg",
    "35_0_0_20170104201044970.jpg.chip.jpg",
    "35_1_0_20170104171631209.jpg.chip.jpg",
    "45_0_0_20170104000913421.jpg.chip.jpg",
    "45_1_0_20170103183543298.jpg.chip.jpg",
    "55_0_0_20170104212840141.jpg.chip.jpg",
    "55_1_0_20170109012617704.jpg.chip.jpg",
    "65_0_0_20170111195430569.jpg.chip.jpg",
    "65_1_0_20170110131714147.jpg.chip.jpg",
    "75_0_0_20170111210208339.jpg.chip.jpg",
    "75_1_0_20170110181054680.jpg.chip.jpg",
    "85_0_0_20170111205512345.jpg.chip.jpg",
    "85_1_0_20170109151120998.jpg.chip.jpg",
    "92_0_3_20170105180848734.jpg.chip.jpg",
    "95_1_0_20170110175711811.jpg.chip.jpg",
]


@pytest.mark.slow
def test_shipped_weights_age_real_aligned_test_faces(shared_datasets):
    """The shipped regressor on 20 real faces through faceage's own pipeline: right order, sane error."""
    import numpy as np

    from faceage.assets import WEIGHTS_DIR
    from faceage.faces.pipeline import FacePipeline
    from faceage.imageio import load_image
    from faceage.models.io import AGE_REGRESSOR_SHIPPED as SHIPPED_NAME

    model = load_age_regressor(WEIGHTS_DIR / SHIPPED_NAME)
    pipeline = FacePipeline(size=128)
    folder = shared_datasets / "utkface" / "images"
    faces = np.stack([pipeline.align_one(load_image(folder / name), name).image for name in UTK_TEST_FACES])
    ages = np.array([float(name.split("_")[0]) for name in UTK_TEST_FACES])
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        pred = model(x).age.numpy()
    mae = float(np.abs(pred - ages).mean())
    corr = float(np.corrcoef(pred, ages)[0, 1])
    assert mae < MAX_MAE_20_FACES and corr > MIN_CORR_20_FACES, (mae, corr, pred.round(1).tolist())
