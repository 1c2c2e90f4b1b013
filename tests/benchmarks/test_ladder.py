"""elsr ladder: every size scored FP32 and INT8, exported to each runtime and timed; one table, one chart."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import elsr.benchmarks.ladder as ladder
from elsr.benchmarks.backends import BACKENDS
from elsr.benchmarks.ladder import LadderConfig, LadderSize, Timing, run_ladder
from elsr.benchmarks.ladder_report import LADDER_SECTION, budget_lines, format_report, markdown_table
from elsr.cli.main import main
from elsr.data.validation import dataset_name
from elsr.io.files import section_markers
from elsr.export.formats import FORMATS
from elsr.export.onnx_int8 import build_int8_model, save_model
from elsr.export.onnx_fp32 import model_metadata
from elsr.model.checkpoint import save_checkpoint
from elsr.model.network import ELSR, ModelConfig
from elsr.quant.fake_quant import QuantELSR
from elsr.quant.params import quant_params
from tests.helpers import observe_ranges

QUICK = ["--runs", "2", "--warmup", "0", "--frame", "24x32", "--no-progress"]


def size_pair(root: Path, channels: int) -> tuple[Path, Path]:
    """A small random x4 model of ``channels`` hidden channels and its INT8 ONNX (ranges observed, no training)."""
    torch.manual_seed(channels)
    model = ELSR(ModelConfig(scale=4, channels=channels)).eval()
    folder = root / f"c{channels}"
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "model.pt", model)
    qmodel = observe_ranges(QuantELSR(model))
    save_model(build_int8_model(quant_params(qmodel), {**model_metadata(model, "int8"), "quantization": "qat; qdq"}),
               folder / "int8.onnx")
    return folder / "model.pt", folder / "int8.onnx"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> list[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("ladder")
    return [size_pair(root, 8), size_pair(root, 4)]


def test_ladder_command_writes_table_chart_json_and_section(tmp_path, pairs, models, capsys):
    out, markdown = tmp_path / "out", tmp_path / "BENCHMARKS.md"
    markdown.write_text("# ELSR benchmarks\n\nkept text\n")
    argv = ["ladder", *[a for pair in pairs for a in ("--pair", str(pair[0]), str(pair[1]))], "--data",
            str(models.hr), "--runtimes", "ort-fp32", "ort-int8", "tflite-int8", "--out", str(out), "--markdown",
            str(markdown), *QUICK]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    assert [s["channels"] for s in result["sizes"]] == [4, 8]            # narrowest first
    for size in result["sizes"]:
        assert set(size["timings"]) == {"ORT FP32", "ORT INT8", "TFLite INT8"}
        assert all(t["status"] == "ok" and t["median_ms"] > 0 for t in size["timings"].values())
        assert set(size["quality"]) == {"fp32", "int8"} and set(size["quality"]["int8"]) == {dataset_name(models.hr)}
        assert size["params"] == sum(p.numel() for p in ELSR(ModelConfig(channels=size["channels"])).parameters())
    assert (out / "ladder.png").read_bytes()[:4] == b"\x89PNG"
    assert "c4 (4 ch)" in printed and "c8 (8 ch)" in printed and "fps, 96x128 out (fastest)" in printed
    text = markdown.read_text()
    assert "kept text" in text and all(marker in text for marker in section_markers(LADDER_SECTION))
    assert "![quality vs latency per size](out/ladder.png)" in text
    assert (out / "results.csv").read_text().count("\n") == 1 + 2 * (2 + 3)   # header, 2 sizes x (2 scores + 3 runs)


def test_a_runtime_that_fails_or_is_missing_is_a_cell_with_its_reason(tmp_path, pairs, models, monkeypatch):
    def broken(request, out):
        raise RuntimeError("converter exploded")

    for name in ("tflite", "executorch"):
        monkeypatch.setitem(FORMATS, name, dataclasses.replace(FORMATS[name], export=broken))
    missing = {"executorch": "not on this phone", "ort-cpu": "no onnxruntime here"}
    monkeypatch.setattr(ladder, "BACKENDS", tuple(dataclasses.replace(b, unavailable=lambda why=missing[b.name]: why)
                                                  if b.name in missing else b for b in BACKENDS))
    cfg = LadderConfig([LadderSize(*pairs[1])], [models.hr], tmp_path / "work", runs=2, warmup=0, frame=(24, 32),
                       runtimes=["ort-fp32", "tflite-int8", "executorch-fp32"], progress=False)
    result = run_ladder(cfg)
    cells = result.sizes[0].timings
    assert cells["TFLite INT8"].status == "export failed: RuntimeError: converter exploded"
    assert cells["ExecuTorch FP32"].status == "skipped: not on this phone" and cells["ExecuTorch FP32"].file is None
    assert cells["ORT FP32"].status == "not timed: no onnxruntime here" and Path(cells["ORT FP32"].file).is_file()
    report = format_report(result)
    assert "- c4 TFLite INT8: export failed: RuntimeError: converter exploded" in report
    assert "- c4 ORT FP32: not timed: no onnxruntime here (c4_c4_fp32.onnx exported and checked)" in report
    table = markdown_table(result)
    assert "| export failed |" in table and "| skipped |" in table and "| not timed |" in table


def test_budget_lines_pick_the_best_int8_size_that_fits(tmp_path, pairs, models):
    cfg = LadderConfig([LadderSize(*p) for p in pairs], [models.hr], tmp_path / "work", runs=2, warmup=0,
                       frame=(24, 32), runtimes=["ort-int8"], progress=False)
    result = run_ladder(cfg)
    narrow, wide = result.sizes
    narrow.timings["ORT INT8"], wide.timings["ORT INT8"] = Timing("a", median_ms=10.0), Timing("b", median_ms=20.0)
    data = dataset_name(models.hr)
    narrow.quality["int8"][data]["psnr_y"], wide.quality["int8"][data]["psnr_y"] = 30.0, 31.0
    lines = budget_lines(result)
    assert lines[0].startswith("- 30 fps (33.3 ms per frame): c8 (8 ch) INT8 with ORT INT8, 20.00 ms")
    assert lines[1].startswith("- 60 fps (16.7 ms per frame): c4 (4 ch) INT8")
    assert lines[2] == "- 120 fps (8.3 ms per frame): no INT8 size fits on this machine."
    assert f"| c4 (4 ch) | {narrow.params:,} | " in markdown_table(result)


@pytest.mark.parametrize("argv,message", [
    (["--pair", "nothing.pt", "nothing.onnx"], "no such FP32 checkpoint"),
    (["--sizes", "7"], "no bundled x4 model with 7 hidden channels"),
    (["--runtimes", "ort-fp16"], "invalid choice"),
])
def test_ladder_refuses_bad_input_in_one_line(tmp_path, models, capsys, argv, message):
    code = main(["ladder", *argv, "--data", str(models.hr), *QUICK])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_pair_refuses_a_checkpoint_as_its_int8_model(tmp_path, pairs, models, capsys):
    code = main(["ladder", "--pair", str(pairs[0][0]), str(pairs[0][0]), "--data", str(models.hr), *QUICK])
    err = capsys.readouterr().err
    assert code == 2 and "--pair INT8_ONNX wants" in err and len(err.strip().splitlines()) == 1
