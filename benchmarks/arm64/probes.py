"""``--probes``: each operator of the INT8 TFLite graph alone, to find which kernel gives another output.

``elsr.export.tflite.int8_operator_graphs`` writes every operator (each CONV_2D, LEAKY_RELU, ADD,
DEPTH_TO_SPACE) as a graph of its own with the bundled model's QAT weights and ranges, int8 in and
out. Each runs on random int8 inputs (the whole int8 range) through LiteRT with XNNPACK and with its
builtin kernels, on x86 and on every emulated core; the outputs are compared in int8 steps. Reported,
never judged: a random input is not a picture, and the graph check is the one that counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from elsr.benchmarks.arm64.compare import agreement
from elsr.errors import ElsrError
from elsr.export.onnx_int8 import load_int8_source
from elsr.export.tflite import int8_operator_graphs, save_tflite
from elsr.pretrained import MODELS
from elsr.runtime.tflite_model import interpreter_class

RUNTIMES = ("litert-xnnpack", "litert-builtin")
PREFIX = "probe_"


@dataclass(frozen=True)
class Probe:
    name: str            # conv_head, leaky_relu, ...
    file: str            # probe_<name>.tflite in the work folder's models/


def write_probes(work: Path, side: int, seed: int = 0) -> list[Probe]:
    """Write each operator graph to ``work/models`` and its random inputs (an .npz) to ``work/in``."""
    _, params, _ = load_int8_source(MODELS["x4-int8"])
    rng = np.random.default_rng(seed)
    probes = []
    for name, data in int8_operator_graphs(params).items():
        probe = Probe(name, f"{PREFIX}{name}.tflite")
        save_tflite(data, work / "models" / probe.file)
        details = interpreter_class()(model_content=data).get_input_details()
        arrays = [rng.integers(-128, 128, (1, side, side, int(d["shape"][-1])), dtype=np.int8) for d in details]
        (work / "in").mkdir(parents=True, exist_ok=True)
        np.savez(work / "in" / f"{probe.file}.npz", *arrays)
        probes.append(probe)
    return probes


def probe_jobs(core_folder: str, probes: list[Probe], folder: str) -> list[dict]:
    """The runner's jobs for the probes, paths under ``folder``; outputs under ``out/<core_folder>``."""
    return [{"id": f"{p.file}:{runtime}", "model": f"{folder}/models/{p.file}", "runtime": runtime,
             "inputs": [f"{folder}/in/{p.file}.npz"], "outputs": [f"{folder}/out/{core_folder}/{runtime}/{p.file}.npy"]}
            for p in probes for runtime in RUNTIMES]


def compare_probes(work: Path, core: str, core_folder: str, x86_folder: str, probes: list[Probe],
                   outcome: dict[str, tuple[float | None, str | None]]) -> list[dict]:
    """One record per (probe, runtime) on ``core``: share of int8 values equal to x86's, largest difference in steps."""
    records = []
    for probe in probes:
        for runtime in RUNTIMES:
            record = {"probe": probe.name, "runtime": runtime, "core": core, "identical": None, "max_diff": None,
                      "error": outcome[f"{probe.file}:{runtime}"][1]}
            if record["error"] is None:
                arm, x86 = (np.load(work / "out" / folder / runtime / f"{probe.file}.npy")
                            for folder in (core_folder, x86_folder))
                found = agreement([arm], [x86], lambda y: y.astype(np.float64) / 255.0)   # differences in int8 steps
                record["identical"], record["max_diff"] = found.identical, found.max_diff
            records.append(record)
    return records


def probes_table(records: list[dict], cores: list[str]) -> str:
    """Rows: (operator, runtime); columns: cores; cells: share of int8 outputs equal to x86's / largest difference."""
    if not records:
        raise ElsrError("no probe records", fix="run with --probes")
    lines = ["| operator alone (int8) | runtime | " + " | ".join(cores) + " |", "|---|---|" + "---:|" * len(cores)]
    rows: dict[tuple[str, str], dict[str, dict]] = {}
    for r in records:
        rows.setdefault((r["probe"], r["runtime"]), {})[r["core"]] = r
    for (probe, runtime), by_core in rows.items():
        cells = [("error" if r["error"] else f"{100 * r['identical']:.2f}% / {r['max_diff']:.0f}")
                 for r in (by_core[c] for c in cores)]
        lines.append(f"| {probe} | {runtime} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
