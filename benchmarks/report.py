"""The report: a Markdown table (stdout and BENCHMARKS.md), results.json, results.csv, latency_vs_psnr.png."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Callable

from elsr.benchmarks.paper import comparison_lines
from elsr.benchmarks.results import BenchResult, Row
from elsr.io.files import atomic_path, kept_sections, write_text

MIB = 1024 * 1024


def _num(fmt: str) -> Callable[[Any], str]:
    return lambda value: "-" if value is None else format(value, fmt)


# header -> how to show it; the Markdown table and nothing else is built from this list
COLUMNS: list[tuple[str, Callable[[Row], str]]] = [
    ("backend", lambda r: r.backend),
    ("model", lambda r: Path(r.model).name if r.model else "-"),
    ("precision", lambda r: r.precision or "-"),
    ("threads", lambda r: _num("d")(r.threads)),
    ("size KiB", lambda r: _num(".1f")(r.size_kib)),
    ("params", lambda r: _num(",d")(r.params)),
    ("median ms", lambda r: _num(".2f")(r.median_ms)),
    ("p90 ms", lambda r: _num(".2f")(r.p90_ms)),
    ("min ms", lambda r: _num(".2f")(r.min_ms)),
    ("fps", lambda r: _num(".1f")(r.fps)),
    ("x30fps", lambda r: _num(".2f")(r.realtime_fraction)),
    ("GMAC/s", lambda r: _num(".1f")(r.gmac_per_s)),
    ("% peak", lambda r: _num(".1%")(r.peak_fraction)),
    ("peak RSS MiB", lambda r: _num(".0f")(None if r.peak_rss_bytes is None else r.peak_rss_bytes / MIB)),
    ("PSNR-Y", lambda r: _num(".2f")(r.psnr_y)),
    ("PSNR-RGB", lambda r: _num(".2f")(r.psnr_rgb)),
    ("SSIM-Y", lambda r: _num(".4f")(r.ssim_y)),
    ("SSIM-RGB", lambda r: _num(".4f")(r.ssim_rgb)),
    ("status", lambda r: r.status.replace("|", "/")),
]


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(h for h, _ in COLUMNS) + " |",
             "|" + "|".join("---" if h in ("backend", "model", "precision", "status") else "---:"
                            for h, _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(show(row) for _, show in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def video_lines(video: dict | None) -> list[str]:
    if not video:
        return []
    if video["status"] != "ok":
        return [f"- Video ({video['source']}): {video['status']}"]
    return [f"- Video ({video['source']}, {video['frames']} frames {video['input_size']} -> {video['output_size']}, "
            f"{video['backend']}, threads {video['threads'] or '-'}): {video['end_to_end_fps']:.1f} fps end to end "
            f"(OpenCV decode + super-resolution + {video['codec']} mp4 encode), {video['sr_fps']:.1f} fps "
            f"super-resolution (uint8 frame in and out), {video['model_fps']:.1f} fps the model alone."]


def notes(result: BenchResult) -> list[str]:
    """The lines under the table: settings, estimate caveats, per-row notes, paper, video."""
    s = result.settings
    lines = [f"- Input {s['input_shape']} float32, {s['warmup']} warm-up + {s['runs']} timed runs per row; "
             f"{s['timing']}. Memory: {s['memory']}.",
             f"- {result.machine.peak_note()}"]
    quality = [r.quality_source for r in result.rows if r.quality_source and r.kind != "reference"]
    if s["data"]:
        lines.append(f"- PSNR/SSIM: the means `elsr eval` reports on {s['data']} (LR by MATLAB bicubic, "
                     f"{len(set(quality))} evaluation(s)); channels_last/compile rows share the checkpoint's score.")
    lines += [f"- {row.name} (threads {row.threads or '-'}): {note}" for row in result.rows
              for note in dict.fromkeys(row.notes) if row.kind != "reference"]
    return lines + comparison_lines(result.paper) + video_lines(result.video)


def format_report(result: BenchResult) -> str:
    return markdown_table(result.rows) + "\n\n" + "\n".join(notes(result)) + "\n"


def write_json(result: BenchResult, path: Path) -> None:
    write_text(path, json.dumps(result.to_dict(), indent=2) + "\n")


def write_csv(rows: list[Row], path: Path) -> None:
    records = [row.to_dict() for row in rows]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]) if records else ["name"], lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({**record, "notes": "; ".join(record["notes"])})
    write_text(path, buffer.getvalue())


def plot_latency_vs_psnr(result: BenchResult, path: Path) -> None:
    """Median latency (log x) against PSNR-Y, one labelled point per row; bicubic and the frame budget as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    points = [r for r in result.rows if r.ok and r.median_ms and r.psnr_y is not None]
    markers = "os^Dv<>P*X"
    for i, row in enumerate(points):  # a legend entry per row: labels beside points overlap
        ax.scatter(row.median_ms, row.psnr_y, color=plt.get_cmap("tab10")(i % 10), marker=markers[i % 10],
                   s=45, zorder=3, label=f"{row.name} ({row.threads or '-'}t, {row.precision})")
    budget = result.paper["target"]["frame_budget_ms"]
    ax.axvline(budget, color="grey", ls=":", label=f"{budget:.1f} ms (30 fps)")
    bicubic = next((r for r in result.rows if r.kind == "reference"), None)
    if bicubic is not None:
        ax.axhline(bicubic.psnr_y, color="grey", ls="--", label=f"bicubic {bicubic.psnr_y:.2f} dB")
    if not points:
        ax.text(0.5, 0.5, "no row with both a latency and a PSNR (pass --data)", transform=ax.transAxes,
                ha="center")
    ax.set_xscale("log")
    ax.set_xlabel(f"median latency per {result.settings['input_shape']} frame (ms, log scale)")
    ax.set_ylabel("PSNR-Y (dB)")
    ax.set_title(f"Latency vs quality on {result.settings['data'] or '(no --data)'}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_outputs(result: BenchResult, out: Path) -> list[Path]:
    """results.json, results.csv and latency_vs_psnr.png in ``out``."""
    paths = [out / "results.json", out / "results.csv", out / "latency_vs_psnr.png"]
    write_json(result, paths[0])
    write_csv(result.rows, paths[1])
    plot_latency_vs_psnr(result, paths[2])
    return paths


def benchmarks_markdown(result: BenchResult) -> str:
    """BENCHMARKS.md: machine, table, notes, and the command that regenerates it."""
    s = result.settings
    return "\n".join([
        "# ELSR benchmarks", "",
        f"Machine: {result.machine.line()}.", "",
        f"Threads used: {', '.join(map(str, s['threads']))}; input {s['input_shape']}; "
        f"{s['warmup']} warm-up + {s['runs']} timed runs per row.", "",
        markdown_table(result.rows), "",
        *notes(result), "",
        "Regenerate with (the models come from the commands in README.md, section Reproduce):", "", "```bash",
        s["command"] or "python -m elsr.benchmarks", "```", ""])


def write_markdown(result: BenchResult, path: Path) -> None:
    """The benchmark report as ``path``; the file's "## " sections (other tools' figures, such as the ARM64 check's)
    are kept after it."""
    kept = kept_sections(path)
    write_text(path, benchmarks_markdown(result) + ("\n" + kept if kept else ""))
