"""The size ladder's report: one Markdown table (stdout and BENCHMARKS.md), which size fits which frame budget,
results.json, results.csv and ladder.png (PSNR-Y and PSNR-RGB against latency, one line per runtime)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from elsr.benchmarks.ladder import PRECISIONS, RUNTIMES, LadderResult, LadderRuntime, SizeResult, Timing
from elsr.benchmarks.report import BENCHMARKS_TITLE
from elsr.io.files import atomic_path, write_section, write_text

LADDER_SECTION = "size ladder"
CHART = "ladder.png"
FAMILIES = tuple(dict.fromkeys(r.family for r in RUNTIMES))   # ORT, TFLite, ExecuTorch, CoreML
BUDGETS_FPS = (30, 60, 120)   # frame rates the "which size" lines are given for


def output_size(result: LadderResult) -> str:
    """HxW of the timed frame's output, e.g. 720x1280."""
    scale = result.sizes[0].scale if result.sizes else 4
    height, width = (int(v) for v in result.settings["input_shape"].split("x")[2:])
    return f"{height * scale}x{width * scale}"


def size_label(size: SizeResult) -> str:
    return f"{size.name} ({size.channels} ch{', paper' if size.paper else ''})"


def timing_of(size: SizeResult, family: str, precision: str) -> Timing | None:
    """The cell of ``family`` running ``precision`` for this size, if the ladder has one."""
    label = next((r.label for r in RUNTIMES if r.family == family and r.precision == precision), None)
    return size.timings.get(label)


def timing_cell(timing: Timing | None) -> str:
    if timing is None:
        return "-"
    if not timing.ok:
        return timing.status.split(":", 1)[0]   # the reason is in the notes under the table
    return f"{timing.median_ms:.2f} (CPU {timing.cpu_ms:.1f})" if timing.cpu_ms is not None else \
        f"{timing.median_ms:.2f}"


def fastest(size: SizeResult, precision: str | None = None) -> tuple[LadderRuntime, Timing] | None:
    """The quickest ok runtime of the size (of one precision, or any) and its cell."""
    found = [(r, size.timings[r.label]) for r in RUNTIMES
             if r.label in size.timings and size.timings[r.label].ok
             and (precision is None or r.precision == precision)]
    return min(found, key=lambda item: item[1].median_ms) if found else None


def quality_cells(size: SizeResult, precision: str, data: str) -> list[str]:
    mean, fp32 = size.quality[precision][data], size.quality["fp32"][data]

    def psnr(key: str) -> str:
        delta = f" ({mean[key] - fp32[key]:+.3f})" if precision != "fp32" else ""
        return f"{mean[key]:.2f}{delta}"

    return [psnr("psnr_y"), psnr("psnr_rgb"), f"{mean['ssim_y']:.4f} / {mean['ssim_rgb']:.4f}"]


def markdown_table(result: LadderResult) -> str:
    """One row per (size, precision): size, cost, quality on each test set, latency per runtime, best fps."""
    head = ["size", "params", "GMAC/frame", "precision"]
    for data in result.data_names:
        head += [f"{data} PSNR-Y", f"{data} PSNR-RGB", f"{data} SSIM-Y / RGB"]
    head += [f"{family} ms" for family in FAMILIES] + [f"fps, {output_size(result)} out (fastest)"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|---|" + "---:|" * (len(head) - 4)]
    cells = ["bicubic", "-", "-", "-"]   # the reference row
    for data in result.data_names:
        b = result.bicubic[data]
        cells += [f"{b['psnr_y']:.2f}", f"{b['psnr_rgb']:.2f}", f"{b['ssim_y']:.4f} / {b['ssim_rgb']:.4f}"]
    lines.append("| " + " | ".join(cells + ["-"] * (len(FAMILIES) + 1)) + " |")
    for size in result.sizes:
        for precision in PRECISIONS:
            cells = [size_label(size), f"{size.params:,}", f"{size.gmacs:.3f}", precision.upper()]
            for data in result.data_names:
                cells += quality_cells(size, precision, data)
            cells += [timing_cell(timing_of(size, family, precision)) for family in FAMILIES]
            best = fastest(size, precision)
            cells.append(f"{best[1].fps:.0f} ({best[0].family})" if best else "-")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def budget_lines(result: LadderResult) -> list[str]:
    """For each frame rate: the best size (highest PSNR-Y on the last test set, INT8) that some runtime runs
    within the frame's time here."""
    held_out = result.data_names[-1]
    lines = []
    for fps in BUDGETS_FPS:
        budget = 1000.0 / fps
        fitting = [(size, found) for size in result.sizes if (found := fastest(size, "int8"))
                   and found[1].median_ms <= budget]
        if not fitting:
            lines.append(f"- {fps} fps ({budget:.1f} ms per frame): no INT8 size fits on this machine.")
            continue
        size, (runtime, timing) = max(fitting, key=lambda item: item[0].quality["int8"][held_out]["psnr_y"])
        lines.append(f"- {fps} fps ({budget:.1f} ms per frame): {size_label(size)} INT8 with {runtime.label}, "
                     f"{timing.median_ms:.2f} ms, {size.quality['int8'][held_out]['psnr_y']:.2f} dB PSNR-Y on "
                     f"{held_out}.")
    return lines


def notes(result: LadderResult) -> list[str]:
    """Cells without a time, with their reasons; what the columns mean."""
    s = result.settings
    lines = [f"Latency: median ms per {s['input_shape']} frame ({output_size(result)} out) at "
             f"{s['threads']} threads, {s['warmup']} warm-up + {s['runs']} timed runs, with the process's CPU time "
             "per run (all threads together: on a shared machine it moves far less than wall time). INT8 "
             "PSNR in brackets: its difference from the same size's FP32 model. The INT8 quality is the INT8 "
             "ONNX's in onnxruntime; the TFLite and ExecuTorch INT8 files are exported from the same QAT "
             "integers and checked against them at export."]
    for size in result.sizes:
        for label, timing in size.timings.items():
            if not timing.ok:
                exported = f" ({Path(timing.file).name} exported and checked)" if timing.file else ""
                lines.append(f"- {size.name} {label}: {timing.status}{exported}")
    return lines


def format_report(result: LadderResult) -> str:
    return "\n".join([markdown_table(result), "", *notes(result), "",
                      "Which size for which frame rate, here:", "", *budget_lines(result), ""])


def to_csv(result: LadderResult) -> str:
    """One record per (size, precision, runtime-or-quality): flat, for spreadsheets."""
    fields = ["size", "channels", "params", "gmacs_per_frame", "precision", "data", "psnr_y", "psnr_rgb", "ssim_y",
              "ssim_rgb", "runtime", "status", "median_ms", "cpu_ms", "fps", "file"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for size in result.sizes:
        base = {"size": size.name, "channels": size.channels, "params": size.params, "gmacs_per_frame": size.gmacs}
        for precision in PRECISIONS:
            for data, mean in size.quality[precision].items():
                writer.writerow({**base, "precision": precision, "data": data, **mean, "file": size.files[precision]})
        for runtime in RUNTIMES:
            timing = size.timings.get(runtime.label)
            if timing is not None:
                writer.writerow({**base, "precision": runtime.precision, "runtime": runtime.label,
                                 "status": timing.status, "median_ms": timing.median_ms, "cpu_ms": timing.cpu_ms,
                                 "fps": timing.fps, "file": timing.file})
    return buffer.getvalue()


def plot(result: LadderResult, path: Path) -> None:
    """PSNR-Y and PSNR-RGB on the last test set against median latency (log x), one line per runtime through the
    sizes (dashed: FP32); the paper's size marked; bicubic's score in the axis label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    held_out = result.data_names[-1]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, metric, title in zip(axes, ("psnr_y", "psnr_rgb"), ("PSNR-Y", "PSNR-RGB")):
        for i, runtime in enumerate(RUNTIMES):
            points = [(s.timings[runtime.label].median_ms, s.quality[runtime.precision][held_out][metric], s)
                      for s in result.sizes if runtime.label in s.timings and s.timings[runtime.label].ok]
            if not points:
                continue
            colour = plt.get_cmap("tab10")(i)
            style = "-" if runtime.precision == "int8" else "--"
            ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", color=colour,
                    label=runtime.label)
            for ms, value, size in points:
                ax.annotate(f"c{size.channels}", (ms, value), textcoords="offset points", xytext=(4, -10),
                            fontsize=7, color=colour)
                if size.paper:
                    ax.scatter([ms], [value], marker="*", s=220, color=colour, edgecolor="black", zorder=4)
        ax.scatter([], [], marker="*", s=120, color="white", edgecolor="black", label="the paper's size (6 ch)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.set_xlabel(f"median ms per {result.settings['input_shape']} frame, {result.settings['threads']} threads "
                      "(log)")
        ax.set_ylabel(f"{title} on {held_out} (dB; bicubic {result.bicubic[held_out][metric]:.2f})")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"ELSR size ladder: quality vs latency ({result.machine.cpu})", fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def write_outputs(result: LadderResult, out: Path) -> list[Path]:
    """results.json, results.csv and ladder.png in ``out``."""
    paths = [out / "results.json", out / "results.csv", out / CHART]
    write_text(paths[0], json.dumps(result.to_dict(), indent=2) + "\n")
    write_text(paths[1], to_csv(result))
    plot(result, paths[2])
    return paths


def ladder_markdown(result: LadderResult, chart: Path | None, markdown: Path) -> str:
    """BENCHMARKS.md's ladder section: machine, table, notes, budgets, the chart (when written), the command."""
    image = [f"![quality vs latency per size]({Path(os.path.relpath(chart, markdown.parent)).as_posix()})", ""] \
        if chart else []
    return "\n".join(["## Size ladder: quality against latency per width", "",
                      f"Machine: {result.machine.line()}.", "", format_report(result), *image,
                      "Regenerate with (the sizes and their commands: elsr/pretrained/MODEL_CARD.md):", "",
                      "```bash", result.settings["command"] or "elsr ladder", "```", ""])


def write_markdown(result: LadderResult, path: Path, chart: Path | None) -> None:
    """Write (or rewrite) the ladder section of a BENCHMARKS.md-style file; its other sections stay."""
    write_section(path, LADDER_SECTION, ladder_markdown(result, chart, path), BENCHMARKS_TITLE)
