"""``elsr export --format onnx|ort|tflite [--int8]``: one table of formats, one-line errors, the optional
TFLite extra, INT8 from a QAT checkpoint, from an INT8 ONNX or from QAT run on the spot."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from elsr.benchmarks.backends import no_tflite
from elsr.cli.main import main
from elsr.export.formats import FORMATS
from elsr.export.onnx_int8 import build_int8_model, qat_model_from_onnx, quant_params_from_onnx, save_model
from elsr.model.checkpoint import save_checkpoint
from elsr.model.network import ELSR, ModelConfig
from elsr.quant.checkpoint import save_qat_checkpoint
from elsr.quant.fake_quant import QuantELSR
from elsr.quant.params import quant_params
from elsr.runtime.contract import model_metadata as onnx_metadata
from tests.helpers import image_folder, observe_ranges

HAS_LITERT = importlib.util.find_spec("ai_edge_litert") is not None
needs_litert = pytest.mark.skipif(not HAS_LITERT, reason="the tflite extra is not installed")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A checkpoint, its QAT checkpoint and INT8 ONNX, and small image folders."""
    root = tmp_path_factory.mktemp("formats")
    torch.manual_seed(0)
    model = ELSR(ModelConfig(scale=4)).eval()
    save_checkpoint(root / "model.pt", model)
    qmodel = observe_ranges(QuantELSR(model))
    save_qat_checkpoint(root / "model.qat.pt", qmodel, [])
    metadata = {**onnx_metadata(model, "int8"), "quantization": "qat; qdq"}
    save_model(build_int8_model(quant_params(qmodel), metadata), root / "model_int8.onnx")
    save_model(build_int8_model(quant_params(qmodel), {**metadata, "precision": "fp32"}), root / "mislabelled.onnx")
    rng = np.random.default_rng(0)
    return {"root": root, "weights": root / "model.pt", "qat": root / "model.qat.pt", "int8": root / "model_int8.onnx",
            "images": image_folder(root / "images", rng, 2, (24, 32)), "hr": image_folder(root / "hr", rng, 2, (48, 64)),
            "train": image_folder(root / "train", rng, 3, (136, 136))}


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("elsr: error: "), err
    return err[0]


def hide_litert(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name.split(".")[0] == "ai_edge_litert" else real(name, *a, **k))


def test_one_table_drives_export_and_benchmarks():
    from elsr.benchmarks.backends import BACKENDS

    assert list(FORMATS) == ["onnx", "ort", "tflite", "executorch", "coreml"]
    backends = {b.name: b for b in BACKENDS}
    for fmt in FORMATS.values():
        assert fmt.suffix in backends[fmt.backend].suffixes and backends[fmt.backend].kind == fmt.runtime
    assert FORMATS["tflite"].extra == "tflite" and "int8" in FORMATS["tflite"].io_modes
    assert FORMATS["onnx"].io_modes == FORMATS["ort"].io_modes == FORMATS["coreml"].io_modes == ("float",)
    assert FORMATS["executorch"].io_modes == ("float", "int8") and FORMATS["executorch"].extra == "executorch"
    assert FORMATS["coreml"].precisions == ("fp32", "fp16", "int8") and FORMATS["coreml"].extra == "coreml"


def test_tflite_without_the_extra_gives_a_one_line_hint(files, tmp_path, capsys, monkeypatch):
    hide_litert(monkeypatch)
    out = tmp_path / "m.tflite"
    err = one_line_error(capsys, ["export", "--weights", str(files["weights"]), "--format", "tflite",
                                  "--out", str(out)])
    assert "pip install 'elsr[tflite]'" in err and "ai-edge-litert" in err, err
    assert not out.exists()
    (tmp_path / "x.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24))   # a TFLite header
    err = one_line_error(capsys, ["eval", "--model", str(tmp_path / "x.tflite"), "--data", str(files["hr"])])
    assert "pip install 'elsr[tflite]'" in err
    assert no_tflite() == "no TFLite interpreter (pip install 'elsr[tflite]')"


def test_core_formats_work_without_the_extra(files, tmp_path, capsys, monkeypatch):
    hide_litert(monkeypatch)
    assert main(["export", "--weights", str(files["weights"]), "--format", "ort", "--int8", "--qat-checkpoint",
                 str(files["qat"]), "--out", str(tmp_path / "m.ort")]) == 0
    assert (tmp_path / "m.ort").is_file() and (tmp_path / "m.required_operators.config").is_file()


def test_option_mistakes_are_one_line_errors(files, tmp_path, capsys):
    w = str(files["weights"])
    assert "--format onnx cannot have uint8 tensors at its ends" in one_line_error(
        capsys, ["export", "--weights", w, "--format", "onnx", "--uint8-io", "--out", str(tmp_path / "a.onnx")])
    assert "--qat-checkpoint QAT.pt, or --train DIR and --val DIR" in one_line_error(
        capsys, ["export", "--weights", w, "--format", "ort", "--int8", "--out", str(tmp_path / "a.ort")])
    assert "add --int8" in one_line_error(
        capsys, ["export", "--weights", w, "--qat-checkpoint", str(files["qat"]), "--out", str(tmp_path / "a.onnx")])
    assert "writes .ort files" in one_line_error(
        capsys, ["export", "--weights", w, "--format", "ort", "--out", str(tmp_path / "a.onnx")])
    assert "not an NCHW shape" in one_line_error(
        capsys, ["export", "--weights", w, "--fixed-shape", "180x320", "--out", str(tmp_path / "b.onnx")])
    assert "not an INT8 ONNX model written by elsr" in one_line_error(
        capsys, ["export", "--weights", w, "--int8", "--qat-checkpoint", str(files["root"] / "mislabelled.onnx"),
                 "--out", str(tmp_path / "c.onnx")])
    assert "missing.onnx: no such file" in one_line_error(
        capsys, ["export", "--weights", w, "--int8", "--qat-checkpoint", str(files["root"] / "missing.onnx"),
                 "--out", str(tmp_path / "c.onnx")])
    assert not any(tmp_path.iterdir())


def test_ort_int8_from_the_int8_onnx_and_overwrite(files, tmp_path, capsys):
    out = tmp_path / "q.ort"
    argv = ["export", "--weights", str(files["weights"]), "--format", "ort", "--int8", "--qat-checkpoint",
            str(files["int8"]), "--out", str(out), "--check-images", str(files["images"]), "--validate",
            str(files["hr"])]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "identical to its ONNX model" in printed and "required operators (q.required_operators.config)" in printed
    assert "mobile EP (onnxruntime checker): NNAPI: " in printed
    assert "int8 vs QAT fake-quant images" not in printed and printed.count("int8 vs QAT fake-quant") == 5
    assert "validate hr (2 images, q.ort): PSNR-Y" in printed
    assert "benchmark it: elsr bench --models" in printed and "--backends ort-cpu" in printed
    out.unlink()  # the config alone still blocks a second export without --overwrite
    assert "--overwrite" in one_line_error(capsys, argv)
    assert main([*argv, "--overwrite"]) == 0


def test_qat_model_from_int8_onnx_equals_the_checkpoint(files):
    from elsr.quant.checkpoint import load_qat_checkpoint

    a, b = quant_params(load_qat_checkpoint(files["qat"])), quant_params(qat_model_from_onnx(files["int8"]))
    assert a.config == b.config and np.array_equal(a.slope, b.slope)
    for name in a.convs:
        for key in ("weight", "weight_scale", "bias", "bias_scale"):
            np.testing.assert_array_equal(getattr(a.convs[name], key), getattr(b.convs[name], key))
    assert {k: (np.float32(s), z) for k, (s, z) in a.activations.items()} == \
        {k: (np.float32(s), z) for k, (s, z) in b.activations.items()}


def test_bundled_int8_onnx_rebuilds_bit_for_bit():
    """The parameters read from the bundled INT8 ONNX build exactly the same graph again (every initializer)."""
    import onnx
    from onnx import numpy_helper

    bundled = Path(__file__).resolve().parents[2] / "elsr" / "pretrained" / "elsr_x4_int8.onnx"
    original = onnx.load(str(bundled))
    rebuilt = build_int8_model(quant_params_from_onnx(bundled))
    ours = {i.name: numpy_helper.to_array(i) for i in rebuilt.graph.initializer}
    for init in original.graph.initializer:
        np.testing.assert_array_equal(numpy_helper.to_array(init), ours[init.name], err_msg=init.name)
    assert [n.SerializeToString() for n in original.graph.node] == [n.SerializeToString() for n in rebuilt.graph.node]


@needs_litert
def test_tflite_int8_uint8_io_end_to_end(files, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    assert main(["export", "--weights", str(files["weights"]), "--format", "tflite", "--int8", "--qat-checkpoint",
                 str(files["qat"]), "--uint8-io", "--out", str(out), "--validate", str(files["hr"])]) == 0
    printed = capsys.readouterr().out
    assert "TFLite contract: input lr [NxHxWx3] uint8 RGB 0..255" in printed
    assert "TFLite contract: output sr [Nx4Hx4Wx3] uint8 RGB 0..255" in printed
    assert "validate hr (2 images, m.tflite)" in printed
    assert main(["eval", "--model", str(out), "--data", str(files["hr"])]) == 0
    assert "x4, border 4" in capsys.readouterr().out


@needs_litert
def test_qat_on_the_spot_is_saved_for_reuse(files, tmp_path, capsys):
    out = tmp_path / "spot.tflite"
    assert main(["export", "--weights", str(files["weights"]), "--format", "tflite", "--int8", "--train",
                 str(files["train"]), "--val", str(files["hr"]), "--qat-epochs", "2", "--qat-iters", "2",
                 "--device", "cpu", "--out", str(out)]) == 0
    assert out.is_file() and (tmp_path / "spot.qat.pt").is_file()
    assert "reuse it with --qat-checkpoint" in capsys.readouterr().out


def test_each_artifact_records_its_own_validation_psnr(tmp_path):
    """FP32 files record the checkpoint's PSNR; INT8 files the QAT model's own, never the FP32 figure."""
    import onnx

    torch.manual_seed(1)
    model = ELSR(ModelConfig(scale=4)).eval()
    save_checkpoint(tmp_path / "m.pt", model, meta={"val": {"psnr_y": 30.0}, "val_data": "Set5/HR"})
    qmodel = QuantELSR(model).train()
    with torch.no_grad():
        qmodel(torch.rand(2, 3, 16, 16))
    qmodel.freeze_observers()
    history = [{"epoch": 1, "psnr_y": 29.5, "psnr_rgb": 27.0, "ssim_y": 0.8, "ssim_rgb": 0.7, "selected": "raw"}]
    save_qat_checkpoint(tmp_path / "m.qat.pt", qmodel.eval(), history, "Set5/HR")

    def recorded(path: Path) -> tuple[str | None, str | None]:
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        return props.get("psnr_y"), props.get("psnr_data")

    base = ["export", "--weights", str(tmp_path / "m.pt")]
    assert main([*base, "--out", str(tmp_path / "f.onnx")]) == 0
    assert recorded(tmp_path / "f.onnx") == ("30.0000", "Set5/HR")
    assert main([*base, "--int8", "--qat-checkpoint", str(tmp_path / "m.qat.pt"), "--out", str(tmp_path / "q.onnx")]) == 0
    assert recorded(tmp_path / "q.onnx") == ("29.5000", "Set5/HR")
    assert main([*base, "--int8", "--qat-checkpoint", str(tmp_path / "q.onnx"), "--out", str(tmp_path / "r.onnx")]) == 0
    assert recorded(tmp_path / "r.onnx") == ("29.5000", "Set5/HR")  # from an INT8 ONNX: that file's own figure
    save_qat_checkpoint(tmp_path / "old.qat.pt", qmodel, [])  # a QAT result that recorded no score
    assert main([*base, "--int8", "--qat-checkpoint", str(tmp_path / "old.qat.pt"), "--out", str(tmp_path / "o.onnx")]) == 0
    assert recorded(tmp_path / "o.onnx") == (None, None)


@needs_litert
def test_tflite_int8_io_is_integer_end_to_end(files, tmp_path, capsys):
    out = tmp_path / "n.tflite"
    assert main(["export", "--weights", str(files["weights"]), "--format", "tflite", "--int8", "--qat-checkpoint",
                 str(files["qat"]), "--int8-io", "--fixed-shape", "1x3x24x32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "TFLite contract: input lr [1x24x32x3] int8 RGB, pixel - 128" in printed
    assert "LiteRT: XNNPACK: takes it whole: 7/7 operators in 1 partition" in printed
    assert "LiteRT: float32 tensors: none (integer end to end)" in printed
    assert main(["eval", "--model", str(out), "--data", str(files["hr"]), "--no-progress"]) == 0
