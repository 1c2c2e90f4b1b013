"""Delegate readiness: which on-device accelerators take an exported graph whole, measured.

ONNX: onnxruntime's own mobile checker (``onnxruntime.tools.mobile_helpers.usability_checker``) per
execution provider (NNAPI, CoreML NeuralNetwork, CoreML MLProgram), run as ``check_onnx_model_mobile_usability``
runs it (on the graph after onnxruntime's basic optimizations, with shape information): the nodes the EP can
take, the partitions they form, and the caveats the checker lists for each operator. The checker counts an
operator as taken whatever its caveat says (a CRD DepthToSpace counts for NNAPI, which rejects it on the
phone), so every caveat is also checked here on the graph itself: met, not met, or not checkable.

TFLite: which operators LiteRT's default XNNPACK delegate takes (its partitions, from the interpreter's
node list after delegation) and which float32 tensors remain (none, for a fully integer graph).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from elsr.model.network import DEFAULT_FRAME
from elsr.runtime.tflite_model import interpreter_class

EP_CONFIGS = {  # the checker's supported-operator lists, one per execution provider
    "NNAPI": None,
    "CoreML NeuralNetwork": "coreml_supported_neuralnetwork_ops.md",
    "CoreML MLProgram": "coreml_supported_mlprogram_ops.md",
}


@dataclass
class EpReadiness:
    """What one execution provider would take of a graph."""

    ep: str
    nodes: int
    taken: int
    partitions: int
    unsupported: list[str] = field(default_factory=list)          # operators it does not take
    caveats: list[tuple[str, bool | None]] = field(default_factory=list)  # (caveat, met on this graph)

    @property
    def whole(self) -> bool:
        """Every node in one partition, and every caveat met."""
        return self.taken == self.nodes and self.partitions == 1 and all(met for _, met in self.caveats)

    def cell(self) -> str:
        """A short verdict for a table cell."""
        count = f"{self.taken}/{self.nodes} nodes, {self.partitions} partition{'s' if self.partitions != 1 else ''}"
        unmet = [text.split(":")[0] for text, met in self.caveats if met is False]
        return ("whole" if self.whole else "no") + f" ({count}" + (f"; caveat not met: {', '.join(unmet)}" if unmet
                                                                 else "") + ")"

    def line(self) -> str:
        verdict = "takes it whole" if self.whole else "does not take it whole"
        missing = f"; not taken: {', '.join(sorted(self.unsupported))}" if self.unsupported else ""
        caveats = "; ".join(f"{text} [{'met' if met else 'NOT met' if met is False else 'not checked'}]"
                            for text, met in self.caveats)
        return (f"{self.ep}: {verdict}: {self.taken}/{self.nodes} nodes in {self.partitions} partition"
                f"{'s' if self.partitions != 1 else ''}{missing}" + (f"; caveats: {caveats}" if caveats else ""))


# ------------------------------------------------------------------------------------------------- ONNX


def _constant(graph: onnx.GraphProto, name: str) -> bool:
    """An initializer, or a DequantizeLinear of initializers (a QDQ graph's weights)."""
    initializers = {init.name for init in graph.initializer}
    if name in initializers:
        return True
    producer = next((n for n in graph.node if name in n.output), None)
    return producer is not None and producer.op_type == "DequantizeLinear" and all(
        i in initializers for i in producer.input if i)


def _fixed(graph: onnx.GraphProto, name: str) -> bool:
    infos = [*graph.input, *graph.value_info, *graph.output]
    info = next((v for v in infos if v.name == name), None)
    dims = info.type.tensor_type.shape.dim if info is not None else []
    return bool(dims) and all(d.HasField("dim_value") and d.dim_value > 0 for d in dims)


def _attribute(node: onnx.NodeProto, name: str, default=None):
    found = next((a for a in node.attribute if a.name == name), None)
    return default if found is None else onnx.helper.get_attribute_value(found)


def _initializer_shape(graph: onnx.GraphProto, name: str) -> tuple[int, ...] | None:
    init = next((i for i in graph.initializer if i.name == name), None)
    return None if init is None else tuple(init.dims)


def _caveat_met(graph: onnx.GraphProto, op: str, text: str) -> bool | None:
    """Whether a checker caveat for operator ``op`` holds for every such node of ``graph`` (None: not checkable)."""
    nodes = [n for n in graph.node if n.op_type == op]
    checks: dict[str, Callable[[onnx.NodeProto], bool]] = {}
    if op == "Conv":
        checks = {"2D": lambda n: len(_attribute(n, "kernel_shape", [0, 0])) == 2,
                  "constant": lambda n: all(_constant(graph, i) for i in n.input[1:] if i)}
    elif op == "DepthToSpace":
        checks = {"DCR": lambda n: _attribute(n, "mode", b"DCR") == b"DCR",
                  "fixed": lambda n: _attribute(n, "mode", b"DCR") == b"DCR" or _fixed(graph, n.input[0])}
    elif op == "PRelu":
        checks = {"constant": lambda n: _initializer_shape(graph, n.input[1]) is not None,
                  "shape": lambda n: (shape := _initializer_shape(graph, n.input[1])) is not None and (
                      int(np.prod(shape)) == 1 or (len(shape) == 3 and shape[1:] == (1, 1)))}
    elif op in ("QuantizeLinear", "DequantizeLinear"):
        checks = {"constant": lambda n: all(_constant(graph, i) for i in n.input[1:] if i)}
    wanted = [check for key, check in checks.items() if _mentions(text, key)]
    if not wanted:
        return None
    return all(check(n) for n in nodes for check in wanted)


def _mentions(text: str, key: str) -> bool:
    words = {"2D": ("2D",), "constant": ("constant",), "DCR": ("Only DCR",), "fixed": ("fixed shape",),
             "shape": ("shape [C, 1, 1]",)}[key]
    return any(word in text for word in words)


def onnx_readiness(model: onnx.ModelProto) -> list[EpReadiness]:
    """Each mobile execution provider's share of ``model``, as onnxruntime's mobile checker estimates it
    (fixed input sizes required, as on a phone), with every caveat checked on the graph."""
    from onnxruntime.tools.mobile_helpers import usability_checker as checker
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    with tempfile.TemporaryDirectory(prefix="elsr-delegates-") as tmp:
        source, optimized = Path(tmp) / "model.onnx", Path(tmp) / "optimized.onnx"
        onnx.save_model(model, str(source))
        optimize_model(source, optimized, use_external_initializers=True)  # as the checker's command line does
        graph_model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
    reports = []
    for ep, config in EP_CONFIGS.items():
        info = (checker.check_nnapi_partitions(graph_model, True) if config is None
                else checker.check_coreml_partitions(graph_model, True, config))
        present = {n.op_type for n in graph_model.graph.node}
        caveats = []
        for entry in info.supported_ops_checker.get_caveats():
            _, op, text = entry.split(":", 2)
            if op in present:
                caveats.append((f"{op}: {text.strip()}", _caveat_met(graph_model.graph, op, text)))
        reports.append(EpReadiness(ep, info.num_nodes, info.num_supported_nodes, info.num_partitions,
                                   sorted(op.split(":")[-1] for op in info.unsupported_ops), caveats))
    return reports


# ----------------------------------------------------------------------------------------------- TFLite


@dataclass
class TfliteReadiness:
    """What LiteRT's default XNNPACK delegate takes of a .tflite graph."""

    ops: list[str]                    # every operator of the graph, in order
    delegated: list[str]              # those inside an XNNPACK partition
    partitions: int
    float_tensors: list[str]          # activation tensors of type float32 (graph inputs and outputs included)

    @property
    def whole(self) -> bool:
        return self.partitions == 1 and len(self.delegated) == len(self.ops)

    def cell(self) -> str:
        """A short verdict for a table cell."""
        return ("whole" if self.whole else "no") + (f" ({len(self.delegated)}/{len(self.ops)} operators, "
                                                    f"{self.partitions} partition{'s' if self.partitions != 1 else ''})")

    def lines(self) -> list[str]:
        left = [op for op in self.ops if op not in self.delegated] if not self.whole else []
        xnnpack = (f"XNNPACK: takes it whole: {len(self.ops)}/{len(self.ops)} operators in 1 partition"
                   if self.whole else
                   f"XNNPACK: {len(self.delegated)}/{len(self.ops)} operators in {self.partitions} partition"
                   f"{'s' if self.partitions != 1 else ''}; on LiteRT's own kernels: {', '.join(left)}")
        floats = (f"float32 tensors: {', '.join(self.float_tensors)}" if self.float_tensors
                  else "float32 tensors: none (integer end to end)")
        return [xnnpack, floats]


def _partition(ops: list[dict], delegate: dict) -> set[int]:
    """Indices of the nodes a DELEGATE node replaced: those between its inputs and its outputs."""
    producers = {t: op for op in ops if op["op_name"] != "DELEGATE" for t in op["outputs"]}
    inside, stack = set(), list(delegate["outputs"])
    while stack:
        op = producers.get(stack.pop())
        if op is None or op["index"] in inside:
            continue
        inside.add(op["index"])
        stack += [t for t in op["inputs"] if t not in delegate["inputs"]]
    return inside


def tflite_readiness(path: str | Path) -> TfliteReadiness:
    """The XNNPACK partitions and float32 tensors of a .tflite file, as LiteRT sets it up for a frame of the
    challenge's size (a dynamic model is resized to it first)."""
    interpreter = interpreter_class()(model_path=str(path), num_threads=1)
    detail = interpreter.get_input_details()[0]
    if list(detail["shape_signature"]).count(-1):
        interpreter.resize_tensor_input(detail["index"], [1, *DEFAULT_FRAME, 3])
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()  # noqa: SLF001 - the node list after delegation; no public API has it
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    graph_ops = [op for op in ops if op["op_name"] != "DELEGATE"]
    delegated = set().union(*(_partition(ops, d) for d in delegates)) if delegates else set()
    constants = {i for op in graph_ops for i in op["inputs"][1:]} - {t for op in graph_ops for t in op["outputs"]}
    floats = [t["name"] for t in interpreter.get_tensor_details()
              if t["dtype"] == np.float32 and t["index"] not in constants]
    return TfliteReadiness([op["op_name"] for op in graph_ops],
                           [op["op_name"] for op in graph_ops if op["index"] in delegated], len(delegates), floats)
