"""What an ONNX or ORT-format file holds, read before onnxruntime runs it (and wherever elsr reads one's tensors).

- An ONNX file may keep tensors in other files ("external data", a path beside the model): a path that
  leaves the model's folder (absolute, ``..``, a link out of it) is refused before anything is read, as is
  a missing data file or a range beyond its end. onnxruntime would otherwise open whatever the file names.
- Every float tensor (initializers, constants, float attributes, subgraphs; in an ORT-format file its
  initializers) must be finite (:mod:`elsr.model.weights`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from elsr.errors import ElsrError
from elsr.model.weights import refuse_non_finite

if TYPE_CHECKING:
    import onnx

REEXPORT = "re-export it with 'elsr export'"
EXTERNAL_FIX = "keep the model's data files in its own folder (as 'elsr export' writes them), or re-export it"
# ORT-format tensor data types that hold floats (fbs.TensorDataType FLOAT, FLOAT16, DOUBLE) -> numpy
ORT_FLOATS = {1: np.float32, 10: np.float16, 11: np.float64}


def _first_line(exc: Exception) -> str:
    text = str(exc).rsplit("failed:", 1)[-1].strip()
    return (text.splitlines() or [type(exc).__name__])[0][:200]


def onnx_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor a graph holds: initializers, sparse initializers, tensor attributes, and those of subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from onnx_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from onnx_tensors(subgraph)


def _float_attributes(graph: onnx.GraphProto) -> Iterator[tuple[str, np.ndarray]]:
    """The float attributes of every node (a LeakyRelu's slope, a Constant's value_float), subgraphs too."""
    import onnx

    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.FLOAT:
                yield f"{node.name or node.op_type}.{attribute.name}", np.array([attribute.f], np.float32)
            elif attribute.type == onnx.AttributeProto.FLOATS:
                yield f"{node.name or node.op_type}.{attribute.name}", np.array(attribute.floats, np.float32)
            for subgraph in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                yield from _float_attributes(subgraph)


def _inside(folder: Path, location: str) -> bool:
    """Whether ``location`` (an external-data path) names a file inside ``folder``, links followed."""
    relative = Path(location)
    if not location or relative.is_absolute() or ".." in relative.parts or "\x00" in location:
        return False
    try:
        return (folder / relative).resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError, RuntimeError):
        return False


def check_external_data(model: onnx.ModelProto, path: Path) -> bool:
    """Refuse external data outside the model's folder, missing, or shorter than it claims; whether there is any."""
    import onnx

    folder, found = path.parent, False
    for tensor in onnx_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        found = True
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        if not _inside(folder, location):
            raise ElsrError(f"tensor {tensor.name!r} keeps its data at {location!r}, outside the model's folder: "
                            "refused before reading it", path=path, fix=EXTERNAL_FIX)
        data = folder / location
        if not data.is_file():
            raise ElsrError(f"tensor {tensor.name!r} keeps its data in {location!r}, which is missing", path=path,
                            fix=EXTERNAL_FIX)
        try:
            end = int(info.get("offset", 0) or 0) + int(info.get("length", 0) or 0)
        except ValueError:
            end = -1
        if end < 0 or end > data.stat().st_size:
            raise ElsrError(f"tensor {tensor.name!r}: its data range in {location!r} is beyond the file's end "
                            "(truncated or damaged)", path=path, fix=EXTERNAL_FIX)
    return found


def _float_arrays(model: onnx.ModelProto, path: Path) -> Iterator[tuple[str, np.ndarray]]:
    import onnx
    from onnx import numpy_helper

    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
    for tensor in onnx_tensors(model.graph):
        if tensor.data_type not in floats:
            continue
        try:
            values = numpy_helper.to_array(tensor)
        except Exception as exc:  # noqa: BLE001 - onnx raises ValueError, TypeError, ... on inconsistent tensors
            raise ElsrError(f"damaged ONNX model: tensor {tensor.name!r} cannot be read ({_first_line(exc)})",
                            path=path, fix=REEXPORT) from exc
        yield tensor.name, values.astype(np.float32)
    yield from _float_attributes(model.graph)


def read_onnx(path: str | Path) -> onnx.ModelProto:
    """An ONNX file's ModelProto with its external data; one line naming the file when it is not ONNX, keeps data
    outside its folder, or holds weights that are not finite."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError, and whatever a hostile file provokes
        raise ElsrError(f"cannot load this ONNX model (corrupt, truncated or not ONNX): {_first_line(exc)}",
                        path=path, fix=REEXPORT) from exc
    if check_external_data(model, path):
        try:
            onnx.load_external_data_for_model(model, str(path.parent))
        except Exception as exc:  # noqa: BLE001
            raise ElsrError(f"cannot read the model's external data: {_first_line(exc)}", path=path,
                            fix=EXTERNAL_FIX) from exc
    refuse_non_finite(_float_arrays(model, path), path)
    return model


def _ort_graph_tensors(graph) -> Iterator:
    """The tensors of an ORT-format graph: initializers, tensor attributes, those of subgraphs."""
    for index in range(graph.InitializersLength()):
        yield graph.Initializers(index)
    for index in range(graph.NodesLength()):
        node = graph.Nodes(index)
        for a in range(node.AttributesLength()):
            attribute = node.Attributes(a)
            if attribute.T() is not None:
                yield attribute.T()
            for t in range(attribute.TensorsLength()):
                yield attribute.Tensors(t)
            subgraphs = [attribute.G()] if attribute.G() is not None else []
            subgraphs += [attribute.Graphs(g) for g in range(attribute.GraphsLength())]
            for subgraph in subgraphs:
                yield from _ort_graph_tensors(subgraph)


def _ort_arrays(data: bytes, path: Path) -> Iterator[tuple[str, np.ndarray]]:
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import InferenceSession

    graph = InferenceSession.InferenceSession.GetRootAs(data, 0).Model().Graph()
    for tensor in _ort_graph_tensors(graph):
        name = (tensor.Name() or b"").decode("utf-8", "replace")
        if tensor.ExternalDataOffset() >= 0:
            raise ElsrError(f"tensor {name!r} keeps its data outside the file: elsr runs self-contained ORT-format "
                            "models", path=path, fix=REEXPORT)
        dtype = ORT_FLOATS.get(tensor.DataType())
        if dtype is not None and not tensor.RawDataIsNone():
            yield name, tensor.RawDataAsNumpy().view(dtype)


def check_ort_file(path: str | Path) -> None:
    """Refuse an ORT-format file whose tables are damaged or whose weights are not finite."""
    path = Path(path)
    data = path.read_bytes()
    try:
        named = list(_ort_arrays(data, path))
    except ElsrError:
        raise
    except Exception as exc:  # noqa: BLE001 - flatbuffers raises struct/Index/Type errors on a damaged file
        raise ElsrError(f"damaged ORT-format model ({type(exc).__name__} while reading its tables)", path=path,
                        fix=REEXPORT) from exc
    refuse_non_finite(named, path)
