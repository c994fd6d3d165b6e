"""The S4 latency budget of *A StyleGAN-based face age editing method for mobile terminals*: sub-models timed once (on a real tiny generator) and cached,
the choice monotone in the budget, a corrupt cache ignored and rewritten."""

from __future__ import annotations

import json
import math

import pytest
import torch

from faceage.methods.budget import (
    BudgetChoice,
    LatencyTable,
    choose_submodel,
    cost,
    default_cache_path,
    generator_latency_table,
    model_fingerprint,
)
from faceage.models.stylegan2 import Generator, GeneratorConfig

TINY_G = GeneratorConfig(resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channel_base=512, channel_max=32)
RESOLUTIONS = (16, 32)
RATIOS = (0.25, 1.0)
WARMUP, REPEATS = 1, 2


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(TINY_G).eval()


def counting_table(generator, cache_path, **kwargs) -> tuple[LatencyTable, list]:
    """A table over the tiny generator whose ``run`` (the real synthesis) records each call."""
    table = generator_latency_table(
        generator, RESOLUTIONS, RATIOS, cache_path=cache_path, warmup=WARMUP, repeats=REPEATS, **kwargs
    )
    calls, real = [], table.run

    def run(resolution, ratio):
        calls.append((resolution, ratio))
        out = real(resolution, ratio)
        assert out.shape == (1, 3, resolution, resolution)
        return out

    table.run = run
    return table, calls


def test_measured_once_then_read_from_the_cache(generator, tmp_path):
    cache = tmp_path / "cache" / "latency.json"
    table, calls = counting_table(generator, cache)
    times = table.latencies()
    assert set(times) == {(r, c) for r in RESOLUTIONS for c in RATIOS}
    assert all(ms > 0 and math.isfinite(ms) for ms in times.values())
    assert len(calls) == 4 * (WARMUP + REPEATS) and table.measured_now == 4
    table.latencies()
    assert len(calls) == 4 * (WARMUP + REPEATS)  # same object: from memory

    again, calls_again = counting_table(generator, cache)  # a new process would do the same
    assert again.latencies() == pytest.approx(times, abs=1e-3)
    assert calls_again == [] and again.measured_now == 0

    doc = json.loads(cache.read_text())
    (entry,) = doc["entries"].values()
    assert entry["context"]["model"] == model_fingerprint(generator)
    assert entry["context"]["threads"] == torch.get_num_threads() and entry["context"]["device"] == "cpu"
    assert entry["context"]["torch"] == torch.__version__ and entry["context"]["hardware"]
    assert set(entry["ms"]) == {"16x0.25", "16x1", "32x0.25", "32x1"}
    assert not list(cache.parent.glob(".*.tmp"))


def test_new_sub_models_or_another_model_are_measured(generator, tmp_path):
    cache = tmp_path / "latency.json"
    counting_table(generator, cache)[0].latencies()
    wider = generator_latency_table(generator, RESOLUTIONS, (0.25, 0.5, 1.0), cache_path=cache, warmup=0, repeats=1)
    wider.latencies()
    assert wider.measured_now == 2  # only the two (r, 0.5) pairs
    other, calls = counting_table(generator, cache, model_id="another model")
    other.latencies()
    assert other.measured_now == 4 and len(calls) == 4 * (WARMUP + REPEATS)
    assert len(json.loads(cache.read_text())["entries"]) == 2  # both models kept


@pytest.mark.parametrize(
    "garbage",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"format": "faceage-latency"}',
        b'{"format": "faceage-latency", "version": 1, "entries": {"k": 3}}',
    ],
)
def test_corrupt_cache_is_ignored_and_rewritten(generator, tmp_path, garbage):
    cache = tmp_path / "latency.json"
    cache.write_bytes(garbage)
    table, calls = counting_table(generator, cache)
    table.latencies()
    assert table.measured_now == 4
    doc = json.loads(cache.read_text())
    assert doc["format"] == "faceage-latency" and len(doc["entries"]) >= 1


def test_bad_cached_values_are_measured_again(generator, tmp_path):
    cache = tmp_path / "latency.json"
    table, _ = counting_table(generator, cache)
    table.latencies()
    doc = json.loads(cache.read_text())
    (entry,) = doc["entries"].values()
    entry["ms"]["16x1"] = -1
    entry["ms"]["32x1"] = "fast"
    entry["ms"]["garbage"] = 1.0
    cache.write_text(json.dumps(doc))
    again, _ = counting_table(generator, cache)
    again.latencies()
    assert again.measured_now == 2


def test_choice_is_monotone_in_the_budget(generator, tmp_path):
    table, _ = counting_table(generator, tmp_path / "latency.json")
    times = table.latencies()
    budgets = sorted({*times.values(), *(ms * 0.999 for ms in times.values()), 1e-6, 1e6})
    choices = [table.choose_submodel(b) for b in budgets]
    costs = [cost(c.submodel) for c in choices]
    assert costs == sorted(costs)
    assert not choices[0].fits and choices[0].submodel == (16, 0.25)  # nothing fits: the smallest
    assert choices[-1].fits and choices[-1].submodel == (32, 1.0)
    for choice in choices:
        if choice.fits:
            assert choice.latency_ms <= choice.budget_ms
            # nothing of a higher cost fits
            assert not [s for s, ms in times.items() if ms <= choice.budget_ms and cost(s) > cost(choice.submodel)]


def test_choose_submodel_rules():
    times = {(32, 1.0): 4.0, (64, 0.25): 3.0, (64, 1.0): 12.0, (128, 0.25): 9.0, (128, 1.0): 40.0}
    assert choose_submodel(times, 100) == BudgetChoice(128, 1.0, 40.0, 100.0, True)
    # (64, 1) and (128, 0.25) cost the same (4096 pixel-ratio units): the faster one wins
    assert choose_submodel(times, 20).submodel == (128, 0.25)
    assert choose_submodel(times, 5).submodel == (64, 0.25)  # ties with (32, 1) at 1024, and is faster
    low = choose_submodel(times, 1.0)
    assert not low.fits and low.submodel == (64, 0.25)  # cheapest: (32,1) and (64,0.25) tie, faster wins
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            choose_submodel(times, bad)
    with pytest.raises(ValueError):
        choose_submodel({}, 10)


def test_bad_sub_models_are_refused(generator, tmp_path):
    with pytest.raises(ValueError, match="resolution must be one of"):
        generator_latency_table(generator, (64,), (1.0,), cache_path=tmp_path / "c.json")
    with pytest.raises(ValueError, match="ratio"):
        LatencyTable(lambda r, c: None, [(32, 1.5)], "m")
    with pytest.raises(ValueError, match="no sub-models"):
        LatencyTable(lambda r, c: None, [], "m")


def test_default_cache_path_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "faceage" / "latency.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / ".cache" / "faceage" / "latency.json"


def test_fingerprint_follows_the_weights(generator):
    copy = Generator(TINY_G)
    copy.load_state_dict(generator.state_dict())
    assert model_fingerprint(copy) == model_fingerprint(generator)
    with torch.no_grad():
        copy.blocks.b4.const.add_(1e-3)
    assert model_fingerprint(copy) != model_fingerprint(generator)
