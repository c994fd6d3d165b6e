from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceage.eval.fid import FeatureExtractor, FeatureStats, cached_stats, fd_between, frechet_distance
from faceage.models.mobilenet import MobileNetV2, imagenet_normalize, load_mobilenet_v2

UTK = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "utkface" / "images"


@pytest.fixture(autouse=True)
def _one_thread():
    """On a shared 2-core CPU, two intra-op threads made a 1280-d eigh 30x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def net() -> MobileNetV2:
    return load_mobilenet_v2()


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    """24 real UTKFace faces, (24, 3, 64, 64) in [-1, 1]."""
    from PIL import Image

    files = sorted(UTK.glob("*.jpg"))[::801][:24]
    assert len(files) == 24
    arr = np.stack([np.asarray(Image.open(f).convert("RGB").resize((64, 64), Image.Resampling.BOX)) for f in files])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1


def test_weights_load_strictly_and_classify_a_cat(net):
    from skimage import data

    img = torch.from_numpy(data.chelsea()).permute(2, 0, 1)[None].float() / 127.5 - 1
    x = F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        top = net(imagenet_normalize(x)).argmax(1).item()
    assert 281 <= top <= 285  # ImageNet cats (tabby, tiger cat, Persian, Siamese, Egyptian)
    state = net.state_dict()
    state.pop("classifier.1.bias")
    with pytest.raises(RuntimeError, match="Missing key"):
        MobileNetV2().load_state_dict(state, strict=True)


def test_frechet_distance_matches_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    s1 = a @ a.T + np.eye(6)
    mu = rng.normal(size=6)
    assert frechet_distance(mu, s1, mu, s1) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(mu, s1, mu + 2.0, s1) == pytest.approx(4.0 * 6, rel=1e-8)
    # Commuting covariances: tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(l1) - sqrt(l2))^2
    d1, d2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 16.0])
    assert frechet_distance(np.zeros(3), d1, np.zeros(3), d2) == pytest.approx(1 + 1 + 1, rel=1e-10)
    scipy_linalg = pytest.importorskip("scipy.linalg")
    b = rng.normal(size=(6, 6))
    s2 = b @ b.T + 0.1 * np.eye(6)
    ref = np.trace(s1 + s2 - 2 * scipy_linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(ref, rel=1e-6)


def test_fd_of_a_set_with_itself_is_zero_and_grows_with_a_shift(net, faces):
    ext = FeatureExtractor("cpu", net=net, size=96)  # smaller than the metric's 224: CPU time
    feats = ext(faces)
    base = FeatureStats()
    base.add(feats)
    assert base.n == 24 and feats.shape == (24, 1280)
    assert fd_between(base, base) == pytest.approx(0.0, abs=1e-6)
    fds = []
    for shift in (0.1, 0.4):
        shifted = FeatureStats()
        shifted.add(ext((faces + shift).clamp(-1, 1)))
        fds.append(fd_between(base, shifted))
    assert 0 < fds[0] < fds[1]
    # Statistics merge across batches exactly.
    merged = FeatureStats()
    merged.add(feats[:10])
    merged.add(feats[10:])
    mu_a, cov_a = merged.mean_cov()
    mu_b, cov_b = base.mean_cov()
    assert np.allclose(mu_a, mu_b) and np.allclose(cov_a, cov_b, atol=1e-6)


def test_cached_stats_computed_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        s = FeatureStats(dim=4)
        s.add(np.arange(12.0).reshape(3, 4) ** 1.5)
        return s

    a = cached_stats(tmp_path, {"n": 3}, compute)
    b = cached_stats(tmp_path, {"n": 3}, compute)
    cached_stats(tmp_path, {"n": 4}, compute)
    assert len(calls) == 2 and np.array_equal(a["sigma"], b["sigma"])
    assert len(list(tmp_path.glob("fdstats-*.npz"))) == 2 and not list(tmp_path.glob("*.tmp"))
