"""`faceage export onnx`: tiny random StyleGAN2 and IPCGAN generators exported, run in onnxruntime
alone and compared with PyTorch; the manifest; bad inputs give one-line errors and write nothing."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import run_cli
from faceage.cli import main
from faceage.export.onnx import (
    MANIFEST_NAME,
    ExportError,
    export_generator,
    export_ipcgan,
    export_onnx,
    ort_session,
    synthesis_file_name,
    write_manifest,
)
from faceage.models.io import save_flat, save_model
from faceage.models.ipcgan import IPCGANConfig, IPCGANGenerator
from faceage.models.stylegan2 import (
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
)

TINY_G = GeneratorConfig(resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channel_base=512, channel_max=32)
TINY_IPCGAN = IPCGANConfig(resolution=64, g_channels=4, g_blocks=1)
RATIOS = (0.5, 1.0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The CPU is shared with other jobs: one intra-op thread (torch and onnxruntime)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_generator() -> Generator:
    """Random weights with visible noise (const noise images must be in the graph) and a moved w_avg."""
    torch.manual_seed(0)
    g = Generator(TINY_G).eval()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
        g.w_avg.normal_()
    return g


def tiny_ipcgan() -> IPCGANGenerator:
    torch.manual_seed(1)
    g = IPCGANGenerator(TINY_IPCGAN)
    with torch.no_grad():  # residual nets start as the identity: give the change a visible size
        g.to_rgb.weight.normal_(0, 0.05)
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return g.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    save_model(tiny_generator(), root / "generator")
    save_flat(tiny_ipcgan(), root / "ipcgan_generator.safetensors")
    save_model(Discriminator(DiscriminatorConfig(resolution=32, channel_base=512, channel_max=32)), root / "disc")
    save_flat(tiny_generator(), root / "not_ipcgan.safetensors")  # a Generator's flat files
    return {
        "generator": root / "generator",
        "ipcgan": root / "ipcgan_generator.safetensors",
        "disc": root / "disc",
        "not_ipcgan": root / "not_ipcgan.safetensors",
    }


@pytest.fixture(scope="module")
def export_run(models, tmp_path_factory) -> tuple[Path, str]:
    """Generator first, IPCGAN in a second run into the same folder (the manifest keeps both);
    returns the folder and what the two commands printed."""
    out = tmp_path_factory.mktemp("onnx")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        main(
            [
                "export",
                "onnx",
                "--generator",
                str(models["generator"]),
                "--out",
                str(out),
                "--resolutions",
                "32",
                "--ratios",
                ",".join(f"{r:g}" for r in RATIOS),
            ]
        )
        main(["export", "onnx", "--ipcgan", str(models["ipcgan"]), "--out", str(out)])
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def exported(export_run) -> Path:
    return export_run[0]


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_NAME).read_text())


def test_manifest_lists_every_verified_file(exported, models):
    doc = _manifest(exported)
    names = [f["file"] for f in doc["files"]]
    expected = ["mapping.onnx", *(synthesis_file_name(32, r) for r in RATIOS), "ipcgan_generator.onnx"]
    assert sorted(names) == sorted(expected)
    assert sorted(p.name for p in exported.glob("*.onnx")) == sorted(expected)
    assert not list(exported.glob(".*.tmp"))
    assert doc["format"] == "faceage-onnx" and doc["opset"] == 18 and doc["timing"]["batch"] == 1
    assert set(doc["sources"]) == {"generator", "ipcgan_generator"}
    assert doc["sources"]["generator"]["config"] == TINY_G.to_dict()
    assert doc["sources"]["generator"]["name"] == "generator" and str(models["generator"]) not in json.dumps(doc)
    for entry in doc["files"]:
        data = (exported / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
        assert 0 <= entry["max_abs_diff"] <= 1e-3
        assert entry["ms_per_image"] > 0
        assert all(t["shape"][0] == "batch" for t in entry["outputs"])
    by_name = {e["file"]: e for e in doc["files"]}
    synth = by_name[synthesis_file_name(32, 0.5)]
    assert synth["resolution"] == 32 and synth["ratio"] == 0.5
    assert synth["inputs"] == [{"name": "ws", "shape": ["batch", 8, 16], "dtype": "float32"}]
    assert synth["outputs"] == [{"name": "image", "shape": ["batch", 3, 32, 32], "dtype": "float32"}]
    assert [t["name"] for t in by_name["mapping.onnx"]["inputs"]] == ["z", "truncation"]
    ipc = by_name["ipcgan_generator.onnx"]
    assert ipc["inputs"] == [
        {"name": "image", "shape": ["batch", 3, 64, 64], "dtype": "float32"},
        {"name": "condition", "shape": ["batch", 8], "dtype": "float32"},
    ]
    # a sub-generator's file holds only the weights it reads
    assert by_name[synthesis_file_name(32, 0.5)]["bytes"] < 0.8 * by_name[synthesis_file_name(32, 1.0)]["bytes"]


def test_synthesis_graphs_match_torch_at_any_batch(exported):
    g = tiny_generator()
    rng = torch.Generator().manual_seed(5)
    for ratio in RATIOS:
        session = ort_session(exported / synthesis_file_name(32, ratio), threads=1)
        for batch in (1, 4):
            with torch.no_grad():
                ws = g.mapping_network(torch.randn(batch * 8, 16, generator=rng)).reshape(batch, 8, 16)
                want = g.synthesis(ws, resolution=32, ratio=ratio, noise_mode="const").numpy()
            (got,) = session.run(None, {"ws": ws.numpy()})
            assert got.shape == (batch, 3, 32, 32)
            np.testing.assert_allclose(got, want, atol=1e-4)
            (again,) = session.run(None, {"ws": ws.numpy()})
            assert np.array_equal(got, again)  # constant noise: deterministic


def test_mapping_graph_applies_truncation(exported):
    g = tiny_generator()
    session = ort_session(exported / "mapping.onnx", threads=1)
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))
    for psi in (1.0, 0.6):
        (w,) = session.run(None, {"z": z.numpy(), "truncation": np.array([psi], np.float32)})
        with torch.no_grad():
            want = g.mapping(z, truncation=psi, update_avg=False).numpy()
        np.testing.assert_allclose(w, want, atol=1e-5)


def test_ipcgan_graph_matches_torch_with_mixed_conditions(exported):
    g = tiny_ipcgan()
    session = ort_session(exported / "ipcgan_generator.onnx", threads=1)
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    condition = torch.zeros(2, 8)
    condition[0, 2] = 1.0
    condition[1, 4], condition[1, 5] = 0.3, 0.7
    (got,) = session.run(None, {"image": image.numpy(), "condition": condition.numpy()})
    with torch.no_grad():
        want = g(image, condition).numpy()
        one_hot = g(image, torch.tensor([2, 5])).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(got[0], one_hot[0], atol=1e-4)  # (B, G) one-hot == group index


def test_cli_prints_each_file_and_its_error(export_run):
    printed = export_run[1]
    assert "synthesis_r32_c050.onnx: max |onnx - torch|" in printed and "ms/image" in printed
    assert "3 files verified" in printed and "1 file verified" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--generator", "{missing}"], "generator folder not found"),
        (["--generator", "{disc}"], "holds a Discriminator, expected a Generator"),
        (["--ipcgan", "{missing}"], "IPCGAN weights not found"),
        (["--ipcgan", "{not_ipcgan}"], "is not an IPCGANGenerator config"),
        (["--generator", "{generator}", "--resolutions", "64"], "resolution 64 is not one of this generator's"),
        (["--generator", "{generator}", "--ratios", "0,1"], "channel ratio must be in (0, 1]"),
        (["--generator", "{generator}", "--ratios", "x"], "expected comma-separated numbers"),
        ([], "name at least one of --generator, --ipcgan and --student"),
        (["--ipcgan", "{ipcgan}", "--opset", "17"], "17 is not in the range x>=18"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(capsys, models, tmp_path, args, message):
    paths = {k: str(v) for k, v in models.items()} | {"missing": str(tmp_path / "nope")}
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "export", "onnx", "-o", str(out), *(a.format(**paths) for a in args))
    assert code in (1, 2)
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_out_must_be_a_folder(capsys, models, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    code, _, err = run_cli(capsys, "export", "onnx", "--ipcgan", str(models["ipcgan"]), "-o", str(target))
    assert code == 2 and "is a file" in err
    with pytest.raises(ExportError, match="not a folder"):
        export_onnx(target, ipcgan=models["ipcgan"])


def test_failed_verification_writes_no_file(tmp_path, monkeypatch):
    import faceage.export.onnx as export_module

    real = export_module.ort_session

    class Off:  # a runtime whose results are off by 0.01
        def __init__(self, model):
            self.session = real(model)

        def run(self, names, feed):
            return [out + 0.01 for out in self.session.run(names, feed)]

    monkeypatch.setattr(export_module, "ort_session", Off)
    with pytest.raises(ExportError, match="differs from torch by 0.01"):
        export_generator(tiny_generator(), tmp_path, resolutions=[8], ratios=[0.25], mapping=False, timing_repeats=1)
    assert list(tmp_path.iterdir()) == []


def test_manifest_drops_entries_of_other_weights_or_changed_files(exported, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(exported, folder)
    doc = _manifest(folder)
    (folder / "mapping.onnx").write_bytes(b"changed")
    # a run that exported nothing new from the same IPCGAN weights keeps the IPCGAN entry
    write_manifest(folder, [], {"ipcgan_generator": doc["sources"]["ipcgan_generator"]}, 18, 1e-3)
    names = {f["file"] for f in _manifest(folder)["files"]}
    assert "mapping.onnx" not in names and "ipcgan_generator.onnx" in names
    # other generator weights: the old sub-generator entries no longer describe that model
    write_manifest(folder, [], {"generator": {"name": "g2", "sha256": "0" * 64}}, 18, 1e-3)
    after = _manifest(folder)
    assert {f["file"] for f in after["files"]} == {"ipcgan_generator.onnx"}
    assert after["sources"]["generator"]["name"] == "g2"


def test_luma_head_ipcgan_exports_and_matches_torch(tmp_path):
    """The colour-safe head (YCbCr, pooled chroma gain, gamut limit) is plain ONNX too."""
    torch.manual_seed(2)
    g = IPCGANGenerator(IPCGANConfig(resolution=64, g_channels=4, g_blocks=1, head="luma")).eval()
    with torch.no_grad():
        g.to_rgb.weight.normal_(0, 0.3)
    result = export_ipcgan(g, tmp_path, timing_repeats=1)
    assert result.max_abs_diff < 1e-4 and (tmp_path / "ipcgan_generator.onnx").is_file()


def test_student_subnetworks_export_and_match_torch(capsys, tmp_path):
    from faceage.models.io import load_flat, save_flat
    from faceage.models.student import Student, StudentConfig

    torch.manual_seed(0)
    net = Student(StudentConfig(input_size=32, widths=(4, 8, 8), blocks=1, resolutions=(64, 128, 256), flow_size=32))
    with torch.no_grad():
        for head in [*net.heads.values(), net.flow_head]:
            head.weight.normal_(0.0, 0.3)
    weights = save_flat(net, tmp_path / "student.safetensors")
    out = tmp_path / "onnx"
    code, printed, err = run_cli(
        capsys,
        "export",
        "onnx",
        "--student",
        str(weights),
        "--resolutions",
        "64,256",
        "--ratios",
        "0.25,1",
        "-o",
        str(out),
    )
    assert code == 0, err
    manifest = json.loads((out / "onnx_manifest.json").read_text())
    files = {e["file"]: e for e in manifest["files"]}
    assert set(files) == {f"student_r{r}_c{c}.onnx" for r in (64, 256) for c in ("025", "100")}
    entry = files["student_r64_c025.onnx"]
    assert [o["name"] for o in entry["outputs"]] == ["aged", "flow"] and entry["max_abs_diff"] < 1e-3
    assert entry["outputs"][0]["shape"] == ["batch", 3, 64, 64]
    # the graph is the sub-network: same result as the method's own network on a real-looking batch
    session = ort_session(out / "student_r256_c100.onnx")
    face = torch.rand(2, 3, 256, 256) * 2 - 1
    ages = (torch.tensor([10.0, 60.0]), torch.tensor([70.0, 5.0]))
    aged, flow = session.run(
        ["aged", "flow"], {"face": face.numpy(), "source": ages[0].numpy(), "target": ages[1].numpy()}
    )
    shipped = load_flat(weights, Student, "student.safetensors", "student")  # fp16 weights, as exported
    want_flow = shipped(face, *ages, 256, 1.0)[0]
    np.testing.assert_allclose(flow, want_flow.detach().numpy(), atol=1e-3)
    assert "student_r64_c025.onnx: max |onnx - torch|" in printed
