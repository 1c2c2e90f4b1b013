"""ORT-format models (``.ort``) for ONNX Runtime Mobile, with the operator list for a minimal build.

The ``.ort`` file is the ONNX model (FP32, or the INT8 QDQ graph of ``elsr.export.onnx_int8``) converted
by onnxruntime's own ``convert_onnx_models_to_ort`` tool in its ``Fixed`` optimization style: the
graph is saved already optimized for the CPU execution provider (QDQ fused to QLinearConv,
QLinearAdd, QLinearLeakyRelu, NHWC integer convs), without the x86-only NCHWc layout, so the same
file runs on ARM. Because nothing is left to optimize at load time, the INT8 ``.ort`` gives
exactly the outputs of its ``.onnx`` (checked at export). Our INT8 graph stores int32 conv biases
(``DequantizeLinear`` of int32), which the converter accepts in both styles; the ``Runtime`` style
(for NNAPI/CoreML) needs ``session.enable_saved_runtime_optimizations`` on the device and is left to
the onnxruntime tool (see the README, "Deploying to a phone").

Beside the model we write ``<name>.required_operators.config``: the operators (by domain and
opset) a minimal ONNX Runtime Mobile build needs for it (``build.sh --minimal_build
--include_ops_by_config``). Which mobile execution providers take the graph is measured by
``elsr.export.delegates`` on the ONNX model.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx

from elsr.errors import ElsrError
from elsr.io.files import atomic_path
from elsr.runtime.onnx_model import onnx_session

log = logging.getLogger(__name__)

CONFIG_SUFFIX = ".required_operators.config"


def config_path(out: str | Path) -> Path:
    """The required-operators config written beside ``out`` (elsr_x4.ort -> elsr_x4.required_operators.config)."""
    out = Path(out)
    return out.with_name(out.stem + CONFIG_SUFFIX)


def fix_input_shape(model: onnx.ModelProto, shape: tuple[int, ...], input_name: str) -> onnx.ModelProto:
    """The model with its input (and, by shape inference, its output) fixed to ``shape``, as
    ``python -m onnxruntime.tools.make_dynamic_shape_fixed`` does (NNAPI and CoreML want fixed shapes)."""
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    model = onnx.ModelProto.FromString(model.SerializeToString())
    try:
        make_input_shape_fixed(model.graph, input_name, list(shape))
        fix_output_shapes(model)
    except ValueError as exc:
        raise ElsrError(f"cannot fix the input shape to {'x'.join(map(str, shape))}: {exc}",
                        fix="pass --fixed-shape NxCxHxW with C = 3") from exc
    return model


def convert_to_ort(onnx_path: Path, workdir: Path) -> tuple[Path, Path]:
    """(the .ort file, its required-operators config) of ``onnx_path``, written into ``workdir``."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    out_dir = workdir / "ort"
    printed = io.StringIO()
    tool_log = logging.getLogger("ort_format_model.utils")
    level = tool_log.level
    tool_log.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(printed):
            convert_onnx_models_to_ort(onnx_path, output_dir=out_dir, optimization_styles=[OptimizationStyle.Fixed])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises plain exceptions
        raise ElsrError(f"onnxruntime cannot convert the model to ORT format: {exc}",
                        fix="check the onnxruntime version (>= 1.17)") from exc
    finally:
        tool_log.setLevel(level)
    for line in printed.getvalue().splitlines():
        log.debug("convert_onnx_models_to_ort: %s", line)
    ort_file = out_dir / f"{onnx_path.stem}.ort"
    config = out_dir / f"{onnx_path.stem}{CONFIG_SUFFIX}"
    if not ort_file.is_file() or not config.is_file():
        raise ElsrError(f"the ORT converter wrote no model: {printed.getvalue().strip()[-300:]}")
    return ort_file, config


def write_ort(onnx_model: onnx.ModelProto, out: Path) -> list[Path]:
    """Convert ``onnx_model`` to ``out`` (.ort) and its config; returns the files written.

    Converts, and checks the .ort file against the ONNX model on a random input: identical outputs for an
    INT8 graph, within 1e-5 for FP32 (operator fusion).
    """
    with tempfile.TemporaryDirectory(prefix="elsr-ort-") as tmp:
        onnx_path = Path(tmp) / f"{out.stem}.onnx"
        onnx.save_model(onnx_model, str(onnx_path))
        ort_file, config = convert_to_ort(onnx_path, Path(tmp))
        mismatch = compare_sessions(onnx_session(onnx_path, "cpu"), onnx_session(ort_file, "cpu"))
        quantized = any(node.op_type == "QuantizeLinear" for node in onnx_model.graph.node)
        if (quantized and mismatch != 0) or mismatch > 1e-5:
            raise ElsrError(f"the .ort model differs from its ONNX model by {mismatch:.3g}",
                            fix="report this with the onnxruntime version")
        text = config.read_text().replace(str(ort_file), out.name)
        with atomic_path(out) as tmp_out:
            shutil.copyfile(ort_file, tmp_out)
        with atomic_path(config_path(out)) as tmp_config:
            tmp_config.write_text(text)
    return [out, config_path(out)]


def compare_sessions(a, b, seed: int = 0) -> float:
    """Max abs difference of two onnxruntime sessions' outputs on the same random input (any fixed dims kept)."""
    meta = a.get_inputs()[0]
    dims = [d if isinstance(d, int) and d > 0 else default for d, default in zip(meta.shape, (1, 3, 37, 45))]
    x = np.random.default_rng(seed).random(dims, dtype=np.float32)
    ya = a.run(None, {meta.name: x})[0]
    yb = b.run(None, {b.get_inputs()[0].name: x})[0]
    return float(np.abs(ya - yb).max())


def required_operators(config: Path) -> list[str]:
    """The operator lines of a required-operators config (``domain;opset;Op1,Op2``)."""
    return [line for line in Path(config).read_text().splitlines() if line and not line.startswith("#")]
