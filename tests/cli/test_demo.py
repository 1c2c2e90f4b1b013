import importlib.util
import re

from elsr.cli.demo import HELD_OUT_PHOTOS, TRAIN_PHOTOS, builtin_dataset
from elsr.cli.main import main
from elsr.io.images import read_image
from tests.helpers import tiny_schedule


def test_builtin_dataset_comes_from_bundled_photos(tmp_path):
    train_dir, val_dir = builtin_dataset(tmp_path)
    assert sorted(p.stem for p in train_dir.glob("*.png")) == sorted(TRAIN_PHOTOS)
    assert sorted(p.stem for p in val_dir.glob("*.png")) == sorted(HELD_OUT_PHOTOS)
    assert read_image(val_dir / "coffee.png").shape == (400, 600, 3)


def test_demo_writes_a_report_with_table_curves_and_pictures(tmp_path, capsys):
    schedule = tiny_schedule(tmp_path / "tiny.yaml")
    out = tmp_path / "demo"
    fast = ["--schedule", str(schedule), "--qat-epochs", "1", "--qat-iters", "5", "--no-progress"]
    assert main(["demo", "--out", str(out), *fast]) == 0
    report = (out / "report.md").read_text()
    assert re.search(r"\| \*\*mean\*\* \| \d+\.\d\d \| \d+\.\d\d \|", report)
    assert re.search(r"\| ELSR INT8 \(QAT\) \| \d+\.\d\d \|", report) and "| ort-cpu | elsr_x4_int8.onnx |" in report
    for name in ("elsr_x4.onnx", "elsr_x4_int8.onnx", "elsr_x4_int8.ort", "elsr_x4_int8.required_operators.config",
                 "bench/results.json", "bench/latency_vs_psnr.png"):
        assert (out / name).is_file(), name
    assert re.search(r"\| ELSR INT8, ORT format \| \d+\.\d\d \|", report) and "| ort-cpu | elsr_x4_int8.ort |" in report
    if importlib.util.find_spec("ai_edge_litert"):  # the tflite extra (CI installs it)
        assert (out / "elsr_x4_int8.tflite").is_file() and "| tflite | elsr_x4_int8.tflite |" in report
    else:
        assert "tflite: not exported" in report
    if importlib.util.find_spec("executorch"):  # the executorch extra (CI installs it)
        assert (out / "elsr_x4_int8.pte").is_file() and "| executorch | elsr_x4_int8.pte |" in report
        assert re.search(r"\| ELSR INT8, ExecuTorch \| \d+\.\d\d \|", report)
    else:
        assert "executorch: not exported" in report
    if importlib.util.find_spec("coremltools"):  # comes with the executorch extra, or elsr[coreml]
        assert (out / "elsr_x4_int8.mlpackage").is_dir() and "| ELSR INT8, Core ML | not run here |" in report
        assert "| coreml | - |" in report and "skipped: not run: Core ML runs on Apple platforms" in report
    else:
        assert "coreml: not exported" in report
    for name in HELD_OUT_PHOTOS:
        assert f"compare_{name}.png" in report and (out / f"compare_{name}.png").stat().st_size > 10_000
    assert (out / "train" / "loss.png").is_file() and (out / "train" / "psnr.png").is_file()
    assert "report.md" in capsys.readouterr().out
    # a second run reuses the finished training
    assert main(["demo", "--out", str(out), *fast]) == 0
