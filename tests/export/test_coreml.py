"""``elsr export --format coreml``: .mlpackage ML Programs checked as Linux allows (never run here): the operators,
the RGB image I/O, the weights read back (INT8: our QAT integers and ranges), the refusals and the benchmark row."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from elsr.cli.main import main
from elsr.io.kinds import file_kind
from elsr.model.checkpoint import save_checkpoint
from elsr.model.network import ELSR, ModelConfig
from elsr.quant.checkpoint import save_qat_checkpoint
from elsr.quant.fake_quant import QuantELSR
from elsr.quant.params import quant_params
from elsr.runtime.contract import COPIES_KEY
from tests.helpers import image_folder, observe_ranges

pytest.importorskip("coremltools", reason="the coreml extra is not installed (pip install 'elsr[coreml]')")

from elsr.export import coreml  # noqa: E402
from elsr.export.request import ExportRequest  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("coreml")
    torch.manual_seed(0)
    model = ELSR(ModelConfig(scale=4)).eval()
    save_checkpoint(root / "model.pt", model)
    qmodels = {}
    for name, split in (("model", False), ("split", True)):   # --no-split, and the default of new QAT
        qmodel = observe_ranges(QuantELSR(model, split=split))
        save_qat_checkpoint(root / f"{name}.qat.pt", qmodel, [])
        qmodels[name] = qmodel
    return {"root": root, "model": model, "qmodels": qmodels,
            "hr": image_folder(root / "hr", np.random.default_rng(0), 1, (48, 48))}


def export(files, capsys, name: str, *extra: str) -> tuple[str, object]:
    out = files["root"] / f"{name}.mlpackage"
    assert main(["export", "--weights", str(files["root"] / "model.pt"), "--format", "coreml", "--out", str(out),
                 "--overwrite", *extra]) == 0
    return capsys.readouterr().out, out


@pytest.mark.parametrize("precision, extra, ops", [
    ("fp32", [], "mul x2, conv x4, leaky_relu, add, pixel_shuffle, clip"),
    ("fp16", ["--fp16"], "mul x2, cast x2, conv x4, leaky_relu, add, pixel_shuffle, clip"),
])
def test_float_packages_hold_our_weights_and_image_io(files, capsys, precision, extra, ops):
    printed, out = export(files, capsys, precision, *extra)
    assert file_kind(out) == "mlpackage"
    assert f"wrote {out} (" in printed and f"coreml, {precision}, x4" in printed
    assert f"Core ML program (10 operators): {ops}" in printed or f"Core ML program (12 operators): {ops}" in printed
    assert "Core ML input lr: image RGB, 9..960 wide, 9..540 high" in printed
    assert "Core ML output sr: image RGB" in printed
    assert printed.count("read back: ") == 4 and "not run: Core ML runs on Apple platforms" in printed
    report = coreml.inspect_package(out)
    assert not report.unexpected and report.metadata["scale"] == "4" and report.metadata["precision"] == precision
    weight = files["model"].head.weight.detach().numpy()
    assert report.weights["head"].dtype == (np.float16 if precision == "fp16" else np.float32)
    assert np.abs(report.weights["head"].astype(np.float32) - weight).max() <= (1e-3 if precision == "fp16" else 0)


@pytest.mark.parametrize("qat", ["model", "split"])
def test_int8_package_holds_our_qat_integers_and_ranges(files, capsys, qat):
    printed, out = export(files, capsys, f"int8_{qat}", "--int8", "--qat-checkpoint",
                          str(files["root"] / f"{qat}.qat.pt"))
    assert "Core ML program (29 operators): mul x2, quantize x7, dequantize x8, constexpr_affine_dequantize x4" in printed
    assert printed.count("int8 weights and scales equal to our QAT integers") == 4
    assert "the same integer function as our QAT ranges" in printed
    report = coreml.inspect_package(out)
    params = quant_params(files["qmodels"][qat])
    assert params.split == (qat == "split") and report.metadata[COPIES_KEY] == str(params.copies)
    c = files["model"].config.channels * params.copies   # the skip path's channels: two copies when split
    assert report.weights["head"].shape[0] == c and report.weights["tail"].shape[1] == c
    for name, conv in params.integer_convs().items():
        assert report.weights[name].dtype == np.int8 and np.array_equal(report.weights[name], conv.weight)
        assert np.array_equal(report.weight_scales[name], conv.weight_scale)
    assert report.activations["head"] == (float(np.float32(params.activations["head"][0])),
                                          params.activations["head"][1])
    assert report.metadata["quantization"].startswith("qat; int8 per-channel weights")


def test_a_package_with_other_weights_is_caught(files, tmp_path):
    request = ExportRequest(files["model"])
    out = coreml.save_package(coreml.coreml_model(request), tmp_path / "m.mlpackage")
    other = ELSR(ModelConfig(scale=4)).eval()
    with pytest.raises(Exception, match="does not hold our weights"):
        coreml.check_package(ExportRequest(other), out)


def test_a_damaged_package_is_one_line(tmp_path):
    package = tmp_path / "bad.mlpackage"
    (package / "Data").mkdir(parents=True)
    (package / "Manifest.json").write_text(json.dumps({"fileFormatVersion": "1.0.0", "itemInfoEntries": {}}))
    with pytest.raises(Exception) as caught:
        coreml.inspect_package(package)
    assert "cannot read this Core ML package" in str(caught.value) and "\n" not in str(caught.value)


def test_refusals_are_one_line(files, tmp_path, capsys):
    w = str(files["root"] / "model.pt")
    argv = ["export", "--weights", w, "--format", "coreml", "--out", str(tmp_path / "a.mlpackage")]
    for extra, phrase in ((["--validate", str(files["hr"])], "coreml models do not run on this machine"),
                          (["--fp16", "--int8"], "--fp16 is for FP32 weights"),
                          (["--int8-io"], "--format coreml cannot have int8 tensors")):
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and phrase in err[0], err
    assert main(["export", "--weights", w, "--format", "onnx", "--fp16", "--out", str(tmp_path / "a.onnx")]) == 2
    assert "--fp16 is for FP32 weights" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_benchmark_row_says_why_it_is_not_run(files, capsys):
    from elsr.benchmarks.bench import run_benchmark
    from elsr.benchmarks.config import BenchConfig

    _, out = export(files, capsys, "bench")
    result = run_benchmark(BenchConfig(models=[out], size=(16, 16), runs=1, warmup=0, backends=["coreml"]))
    assert [r.status for r in result.rows] == ["skipped: not run: Core ML runs on Apple platforms (macOS, iOS)"]


def test_without_the_extra_the_format_is_a_one_line_hint(files, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name.split(".")[0] == "coremltools" else real(name, *a, **k))
    assert main(["export", "--weights", str(files["root"] / "model.pt"), "--format", "coreml", "--out",
                 str(tmp_path / "m.mlpackage")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'elsr[coreml]'" in err[0]
