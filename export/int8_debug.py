"""How far the INT8 graph is from float: per-layer signal-to-quantization-noise, and onnxruntime's integer
graph against the PyTorch fake-quant model it was built from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from elsr.model.inference import image_to_tensor
from elsr.model.network import ELSR
from elsr.quant.fake_quant import COPIES, OBSERVED, SPLIT, QuantELSR, float_taps
from elsr.runtime.contract import INPUT_NAME
from elsr.runtime.onnx_model import graph_session, onnx_session


def layer_sqnr(model: ELSR, int8_onnx: Path, qmodel: QuantELSR, images: list[np.ndarray]) -> dict[str, float]:
    """Signal-to-quantization-noise (dB) of each quantized tensor of the INT8 graph vs the same weights in float."""
    names = [*OBSERVED, "tail"]
    graph = onnx.load(str(int8_onnx))
    for name in names:
        graph.graph.output.append(helper.make_tensor_value_info(f"{name}_q", TensorProto.UINT8, None))
    session = graph_session(graph.SerializeToString())
    signal = dict.fromkeys(names, 0.0)
    noise = dict.fromkeys(names, 0.0)
    for image in images:
        x = image_to_tensor(image)
        outputs = session.run([f"{n}_q" for n in names], {INPUT_NAME: x.numpy()})
        with torch.no_grad():
            ref = float_taps(model, x)
        for name, q in zip(names, outputs):
            scale, zero_point = qmodel.quant[name].qparams()
            f = ref[name].double().numpy()
            c = f.shape[1]
            copies = COPIES if qmodel.split and name in SPLIT else 1
            # the tensor's value: its copies added up, the zero-padded channels left out
            deq = sum((q[:, k * c:(k + 1) * c].astype(np.float64) - zero_point) * scale for k in range(copies))
            signal[name] += float((f ** 2).sum())
            noise[name] += float(((f - deq) ** 2).sum())
    return {n: 10 * np.log10(signal[n] / max(noise[n], 1e-30)) for n in names}


def int8_matches_fake_quant(qmodel: QuantELSR, int8_onnx: Path, image: np.ndarray) -> dict[str, float]:
    """How closely onnxruntime's integer graph reproduces the PyTorch fake-quant model (in grey levels)."""
    x = image_to_tensor(image)
    ours = onnx_session(int8_onnx, "cpu").run(None, {INPUT_NAME: x.numpy()})[0]
    with torch.no_grad():
        ref = qmodel(x).numpy()
    diff = np.abs(ours - ref) * 255
    return {"max_levels": float(diff.max()), "share_within_1_level": float((diff <= 1.0 + 1e-3).mean()),
            "share_exact": float((diff < 1e-3).mean())}
