"""The report: a Markdown table (stdout and BENCHMARKS.md), results.json, results.csv, latency_vs_psnr.png."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Callable

from elsr.benchmarks.paper import comparison_lines
from elsr.benchmarks.readiness import readiness_table
from elsr.benchmarks.reliability import reliability_lines
from elsr.benchmarks.results import BenchResult, Row
from elsr.io.files import atomic_path, write_section, write_text

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
    ("p90/median", lambda r: _num(".2f")(r.spread)),
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
    ("timing", lambda r: r.reliability or "-"),
    ("status", lambda r: r.status.replace("|", "/")),
]


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(h for h, _ in COLUMNS) + " |",
             "|" + "|".join("---" if h in ("backend", "model", "precision", "timing", "status") else "---:"
                            for h, _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(show(row) for _, show in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def _split(stage: str, wait: bool = False) -> Callable[[dict], str]:
    return lambda v: _num(".2f")(v["split_ms_per_frame"][f"{stage}_{'wait_ms' if wait else 'ms'}"])


# the video mode's table: one line per (row, encoder settings)
VIDEO_COLUMNS: list[tuple[str, Callable[[dict], str]]] = [
    ("backend", lambda v: v["backend"]),
    ("threads", lambda v: _num("d")(v["threads"])),
    ("encoder", lambda v: f"{v['encoder']} {v['preset']} crf {v['crf']}"),
    ("frames", lambda v: f"{v['frames']} {v['input_size']} -> {v['output_size']}"),
    ("end to end fps", lambda v: _num(".1f")(v["end_to_end_fps"])),
    ("encoder alone fps", lambda v: _num(".1f")(v["encoder_fps"])),
    ("end to end / encoder", lambda v: _num(".0%")(v["end_to_end_vs_encoder"])),
    ("x30fps", lambda v: _num(".2f")(v["end_to_end_fps"] / 30)),
    ("SR alone fps", lambda v: _num(".1f")(v["sr_fps"])),
    ("CPU ms/frame: end to end / encoder / SR", lambda v: "{:.1f} / {:.1f} / {:.1f}".format(
        v["end_to_end_cpu_ms"], v["encoder_cpu_ms"], v["sr_cpu_ms"])),
    ("decode ms", _split("decode")),
    ("SR + yuv ms", _split("super-resolve")),
    ("encode ms", _split("encode")),
    ("encode waiting ms", _split("encode", wait=True)),
    ("output KiB", lambda v: _num(".0f")(v["output_bytes"] / 1024)),
]
VIDEO_SECTION = "video"  # its name among the sections of BENCHMARKS.md (elsr.io.files.write_section)


def video_table(video: list[dict]) -> str:
    ok = [v for v in video if v["status"] == "ok"]
    lines = ["| " + " | ".join(h for h, _ in VIDEO_COLUMNS) + " |",
             "|" + "|".join("---" if h in ("backend", "encoder", "frames") else "---:" for h, _ in VIDEO_COLUMNS) + "|"]
    lines += ["| " + " | ".join(show(v).replace("|", "/") for _, show in VIDEO_COLUMNS) + " |" for v in ok]
    return "\n".join(lines)


def video_lines(video: list[dict] | None, cores: int) -> list[str]:
    """The video table and what it means; rows that did not run, with their reason."""
    if not video:
        return []
    ok = [v for v in video if v["status"] == "ok"]
    lines = [f"- Video ({v['source']}, {v.get('backend', '-')}): {v['status']}" for v in video if v["status"] != "ok"]
    if not ok:
        return lines
    first = ok[0]
    copied = f", its {first['copied_streams']} audio/subtitle stream(s) copied" if first["copied_streams"] else ""
    return ["", video_table(video), "",
            f"- Video: `elsr upscale`'s own pipeline (elsr.runtime.upscale.upscale_video) on {first['source']} "
            f"({first['frames']} frames{copied}) to {first['container']}: decoding, super-resolution (with the "
            "conversion to yuv420p) and encoding in three threads with bounded queues. 'encoder alone': the same "
            "super-resolved frames, already yuv420p, encoded with the same settings in one thread. Both timed "
            f"{first['rounds']} times in alternation in this run (medians), each from opening the files to "
            "the encoder's last packet.",
            "- The split is the median end-to-end run's time per frame in each thread: its own work ('SR + yuv': "
            "the model on uint8 frames and the RGB -> yuv420p conversion; 'encode': the encoder and muxer calls) "
            "and, for the encoder, the time it waited for frames: near 0 when the encoder sets the pace. "
            "'SR alone': the model on uint8 frames in and out, frame after frame, without the conversion.",
            "- CPU ms/frame: the process's CPU time (every thread) per frame, medians: what the work costs whatever "
            "else runs on the machine. With c free cores the pipeline can reach at most c x 1000 / (end-to-end CPU ms) "
            "fps; when that is far above the measured fps, other processes held the cores.",
            "- Load average (1 minute) from the first video run's start to the last one's end: {:.1f} to {:.1f}, on "
            "{} usable cores: above the core count, other processes were waiting for the cores too.".format(
                min(min(v["load_average"]) for v in ok), max(max(v["load_average"]) for v in ok), cores),
            *lines]


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
    lines += reliability_lines(result.rows, result.machine.usable_cores)
    lines += [f"- {row.name} (threads {row.threads or '-'}): {note}" for row in result.rows
              for note in dict.fromkeys(row.notes) if row.kind != "reference"]
    return lines + comparison_lines(result.paper)


def format_report(result: BenchResult) -> str:
    lines = notes(result) + video_lines(result.video, result.machine.usable_cores)
    return markdown_table(result.rows) + "\n\n" + "\n".join(lines) + "\n"


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
    markers = "os^Dv<>P*"   # 9 markers and 10 colours: no (colour, marker) pair repeats within 90 rows
    for i, row in enumerate(points):  # a legend entry per row: labels beside points overlap
        ax.scatter(row.median_ms, row.psnr_y, color=plt.get_cmap("tab10")(i % 10), marker=markers[i % len(markers)],
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


BENCHMARKS_TITLE = "# ELSR benchmarks"
BENCH_SECTION = "runtimes"


def benchmarks_markdown(result: BenchResult) -> str:
    """The runtime section of BENCHMARKS.md: machine, table, notes, delegate readiness, and the command."""
    s = result.settings
    readiness = ["### Which phone accelerators take each file whole", "",
                 "onnxruntime's mobile checker per execution provider (nodes it takes and the partitions they form, "
                 "with fixed input sizes, as on a phone; each operator caveat the checker lists checked on the graph "
                 "itself), and the operators LiteRT's default XNNPACK delegate takes with the float32 tensors left:",
                 "", readiness_table(result.readiness), ""] if result.readiness else []
    return "\n".join([
        "## Runtimes: latency, memory and quality", "",
        f"Machine: {result.machine.line()}.", "",
        f"Threads used: {', '.join(map(str, s['threads']))}; input {s['input_shape']}; "
        f"{s['warmup']} warm-up + {s['runs']} timed runs per row.", "",
        markdown_table(result.rows), "",
        *notes(result), "",
        *readiness,
        "Regenerate with (the models come from the commands in README.md, section Reproduce):", "", "```bash",
        s["command"] or "python -m elsr.benchmarks", "```", ""])


def video_section(result: BenchResult) -> str:
    """BENCHMARKS.md's video section, with the command that wrote it."""
    return "\n".join([
        "## Video: `elsr upscale` end to end", "",
        f"Machine: {result.machine.line()}.", *video_lines(result.video, result.machine.usable_cores), "",
        "Written by:", "", "```bash", result.settings["command"] or "python -m elsr.benchmarks", "```", ""])


def write_markdown(result: BenchResult, path: Path) -> None:
    """Write (or rewrite) the runtime section of a BENCHMARKS.md-style file, and its video section when the run
    timed a video; its other sections stay."""
    write_section(path, BENCH_SECTION, benchmarks_markdown(result), BENCHMARKS_TITLE)
    if result.video:
        write_video_section(result, path)


def write_video_section(result: BenchResult, path: Path) -> None:
    """Write (or rewrite) only the video section of a BENCHMARKS.md-style file."""
    write_section(path, VIDEO_SECTION, video_section(result), BENCHMARKS_TITLE)
