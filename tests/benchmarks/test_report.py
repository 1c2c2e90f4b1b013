"""results.json, results.csv, latency_vs_psnr.png and BENCHMARKS.md: written, parseable, complete."""

import csv
import json

import matplotlib.image
import pytest

from elsr.benchmarks.bench import run_benchmark
from elsr.benchmarks.config import BenchConfig
from elsr.benchmarks.report import COLUMNS, format_report, markdown_table, write_markdown, write_outputs
from elsr.io.files import write_section

SIZE = (24, 32)  # LR height x width: tiny, for speed


@pytest.fixture(scope="module")
def result(models):
    cfg = BenchConfig(weights=models.weights, models=[models.fp32, models.broken], data=models.hr, size=SIZE,
                      runs=2, warmup=0, threads=[1], backends=["torch-cpu", "ort-cpu"],
                      command="python -m elsr.benchmarks --weights model.pt")
    return run_benchmark(cfg)


def test_table(result):
    table = markdown_table(result.rows).splitlines()
    assert len(table) == 2 + len(result.rows) == 2 + 4  # torch, onnx, broken, bicubic
    assert all(line.count("|") == len(COLUMNS) + 1 for line in table)
    assert "| bicubic |" in table[-1]
    text = format_report(result)
    assert "n/a: " in text and "estimate" in text


def test_files(result, tmp_path):
    json_path, csv_path, png_path = write_outputs(result, tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert [r["name"] for r in data["rows"]] == [r.name for r in result.rows]
    record = data["rows"][0]
    for key in ("name", "status", "median_ms", "p90_ms", "min_ms", "fps", "psnr_y", "ssim_rgb", "size_bytes",
                "size_kib", "params", "gmac_per_s", "peak_rss_bytes", "threads"):
        assert key in record
    assert data["machine"]["cpu"] and data["settings"]["input_shape"] == "1x3x24x32"
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == [r.name for r in result.rows]
    assert float(rows[0]["median_ms"]) == pytest.approx(result.rows[0].median_ms)
    image = matplotlib.image.imread(png_path)
    assert image.ndim == 3 and image.shape[0] > 100
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic writes leave no temporary files


def test_markdown(result, tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    write_markdown(result, path)
    text = path.read_text()
    assert text.startswith("# ELSR benchmarks")
    assert f"Machine: {result.machine.line()}" in text and "onnxruntime" in text
    assert "```bash\npython -m elsr.benchmarks --weights model.pt\n```" in text
    assert markdown_table(result.rows) in text


def test_markdown_rewrites_only_its_own_section(result, tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    write_markdown(result, path)
    write_section(path, "video", "## Video\n\nfigures of another command", "# ELSR benchmarks")
    write_markdown(result, path)  # again: the video section stays, the runtime section is not duplicated
    text = path.read_text()
    assert text.count("## Runtimes: latency, memory and quality") == 1 and "figures of another command" in text
    assert text.index("## Runtimes") < text.index("## Video")


def test_a_named_section_is_a_table_of_its_own(result, tmp_path):
    """--markdown-section: e.g. the ExecuTorch and Core ML rows beside the main table, each rewritten alone."""
    path = tmp_path / "BENCHMARKS.md"
    write_markdown(result, path)
    write_markdown(result, path, "ExecuTorch and Core ML")
    write_markdown(result, path, "ExecuTorch and Core ML")   # again: replaced, not duplicated
    text = path.read_text()
    assert text.count("## Runtimes: latency, memory and quality") == 1
    assert text.count("## Runtimes: ExecuTorch and Core ML") == 1
    assert "<!-- begin ExecuTorch and Core ML: written by a command" in text
    assert "README.md, section ExecuTorch and Core ML" in text and "README.md, section Reproduce" in text
