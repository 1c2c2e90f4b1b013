"""Which phone accelerators take each model file of a benchmark run whole: the export layer's measurement
(``elsr.export.delegates``) as table rows, so the report shows it beside the timings."""

from __future__ import annotations

from pathlib import Path

import onnx

from elsr.errors import ElsrError
from elsr.export.delegates import EP_CONFIGS, onnx_readiness, tflite_readiness
from elsr.runtime.tflite_model import litert_available

COLUMNS = (*EP_CONFIGS, "XNNPACK (LiteRT)", "float32 tensors")


def readiness_row(path: Path) -> dict[str, str] | None:
    """One row for an .onnx or .tflite file (None for other files, or .tflite without the LiteRT extra)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".onnx":
            reports = onnx_readiness(onnx.load(str(path), load_external_data=False))
            return {"model": path.name, **{r.ep: r.cell() for r in reports}}
        if suffix == ".tflite" and litert_available():
            report = tflite_readiness(path)
            return {"model": path.name, "XNNPACK (LiteRT)": report.cell(),
                    "float32 tensors": ", ".join(report.float_tensors) or "none"}
    except Exception as exc:  # noqa: BLE001 - a file the checkers cannot read is a row with the reason
        reason = exc.one_line() if isinstance(exc, ElsrError) else f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        return {"model": path.name, COLUMNS[0]: f"not measured: {reason[:200]}"}
    return None


def readiness_rows(models: list[Path]) -> list[dict[str, str]]:
    return [row for row in (readiness_row(path) for path in dict.fromkeys(models) if path.is_file()) if row]


def readiness_table(rows: list[dict[str, str]]) -> str:
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join([row["model"], *(row.get(c, "-") for c in COLUMNS)]) + " |" for row in rows]
    return "\n".join(lines)
