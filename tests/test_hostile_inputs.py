"""Bad inputs, second round: what a careless or hostile input would do to every command, beside
test_bad_inputs.py and checked the same way (its kit and helpers): exit code 2, exactly one line on stderr
naming the file, no traceback, nothing new or half-written on disk, pre-existing files unchanged.

The families: untrusted model files (junk, truncated, foreign, weights that are not finite, ONNX external
data outside the model's folder); paths (an output that is an input or inside an input folder, suffixes we
cannot write, names with spaces, non-ASCII letters and FFmpeg protocol prefixes); numbers and resources
(every numeric flag of every command line, the memory budget, free disk space and a disk that fills up
mid-write on a real tmpfs); YAML (alias bombs, loops, tags, nesting); video timing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import h5py
import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from elsr.cli.main import main
from elsr.model.checkpoint import read_checkpoint
from elsr.model.network import ELSR, ModelConfig
from tests.helpers import flat_frames, noise_clip, sound_only, tiny_schedule, write_clip, write_png
from tests.test_bad_inputs import (PRETRAINED_ONNX, REPO, Kit, Setup, assert_refused, bench_argv,  # noqa: F401
                                   eval_argv, existing, export_argv, folder_with, kit, leftovers, prepare_argv,
                                   quantize_argv, relu_onnx, rgb, run_elsr, schedule_with, train_argv, upscale_argv)

PRETRAINED = REPO / "elsr" / "pretrained"
INT8_ONNX, INT8_ORT = PRETRAINED / "elsr_x4_int8.onnx", PRETRAINED / "elsr_x4_int8.ort"


def has_litert() -> bool:
    from elsr.runtime.tflite_model import litert_available
    return litert_available()


# ---------------------------------------------------------------- model files to damage


@dataclass(frozen=True)
class Files:
    """Valid models of every format and foreign ones, shared by the cases (never modified)."""

    root: Path
    tflite: Path | None       # FP32 TFLite of kit.x4 (None without LiteRT)
    foreign_tflite: Path | None   # a TFLite graph with two int8 inputs: not an image model
    foreign_ort: Path         # a Relu over a vector, as an ORT-format file


@pytest.fixture(scope="module")
def files(tmp_path_factory, kit: Kit) -> Files:
    from elsr.export.ort_format import convert_to_ort

    root = tmp_path_factory.mktemp("files")
    relu = relu_onnx(root / "relu.onnx", ["n", 16])
    foreign_ort, _ = convert_to_ort(relu, root)
    tflite = foreign_tflite = None
    if has_litert():
        from elsr.export import tflite as tflite_export
        from elsr.export.onnx_int8 import quant_params_from_onnx
        from elsr.model.checkpoint import load_model

        tflite = root / "x4.tflite"
        tflite.write_bytes(tflite_export.fp32_tflite(load_model(kit.x4)[0]))
        foreign_tflite = root / "add.tflite"
        foreign_tflite.write_bytes(tflite_export.int8_operator_graphs(quant_params_from_onnx(INT8_ONNX))["add"])
    return Files(root, tflite, foreign_tflite, foreign_ort)


def needs_litert(files: Files) -> None:
    if files.tflite is None:
        pytest.skip("LiteRT is not installed (pip install 'elsr[tflite]')")


def checkpoint_with(t: Path, kit: Kit, name: str, value: float, key: str = "body_conv1.weight") -> Path:
    """kit.x4 with one weight set to ``value`` (NaN, inf)."""
    ckpt = read_checkpoint(kit.x4)
    ckpt["model"][key].view(-1)[3] = value
    torch.save(ckpt, t / name)
    return t / name


def onnx_with(src: Path, dst: Path, value: float, name: str | None = None) -> Path:
    """An ONNX model with one float initializer (the first, or ``name``) holding ``value`` at one place."""
    model = onnx.load(str(src))
    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT and (name is None or tensor.name == name):
            array = numpy_helper.to_array(tensor).copy()
            array.flat[0] = value
            tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
            break
    onnx.save(model, str(dst))
    return dst


def _poke(data: bytearray, position: int, value: float) -> bytes:
    data[position:position + 4] = np.float32(value).tobytes()
    return bytes(data)


def ort_with(src: Path, dst: Path, value: float) -> Path:
    """An ORT-format model with the first float of its first float initializer replaced by ``value``."""
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import InferenceSession

    data = bytearray(src.read_bytes())
    graph = InferenceSession.InferenceSession.GetRootAs(bytes(data), 0).Model().Graph()
    tensor = next(graph.Initializers(i) for i in range(graph.InitializersLength())
                  if graph.Initializers(i).DataType() == 1 and graph.Initializers(i).RawDataLength() >= 4)
    dst.write_bytes(_poke(data, tensor._tab.Vector(tensor._tab.Offset(12)), value))
    return dst


def tflite_with(src: Path, dst: Path, value: float, scale: bool = False) -> Path:
    """A TFLite model with one float weight (or, with ``scale``, one quantization scale) replaced by ``value``."""
    from elsr.runtime.tflite_model import schema

    data = bytearray(src.read_bytes())
    model = schema().Model.GetRootAs(bytes(data), 0)
    subgraph = model.Subgraphs(0)
    for t in range(subgraph.TensorsLength()):
        tensor = subgraph.Tensors(t)
        if scale and tensor.Quantization() is not None and not tensor.Quantization().ScaleIsNone():
            q = tensor.Quantization()
            dst.write_bytes(_poke(data, q._tab.Vector(q._tab.Offset(8)), value))
            return dst
        if not scale and tensor.Type() == 0 and tensor.Buffer() > 0 and model.Buffers(tensor.Buffer()).DataLength():
            buffer = model.Buffers(tensor.Buffer())
            dst.write_bytes(_poke(data, buffer._tab.Vector(buffer._tab.Offset(4)), value))
            return dst
    raise AssertionError(f"{src} has no tensor to change")


def external_onnx(folder: Path, location: str, data_file: Path | None = None) -> Path:
    """The bundled FP32 model with its weights in an external file, the first tensor's location set to
    ``location``; ``data_file``: where that location's data is put (or the thing that stands there)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(PRETRAINED_ONNX))
    onnx.save(model, str(folder / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.data", size_threshold=0)
    model = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    entry = next(e for e in model.graph.initializer[0].external_data if e.key == "location")
    entry.value = location
    onnx.save(model, str(folder / "m.onnx"))
    if data_file is not None and not data_file.exists():
        shutil.copyfile(folder / "m.data", data_file)
    return folder / "m.onnx"


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, Kit, Files], Setup]
    expect: tuple[str, ...]
    subprocess: bool = False
    needs: str | None = None      # "litert", "tmpfs"


CASES: list[Case] = []


def case(name: str, *expect: str, **options):
    def register(build):
        CASES.append(Case(name, build, expect, **options))
        return build
    return register


# model files: the five failures of the issue first -------------------------------------------------------

@case("upscale-junk-tflite", "junk.tflite", "not a TFLite model")
def _(t, kit, f):
    (t / "junk.tflite").write_bytes(os.urandom(4000))
    return upscale_argv(t, t / "junk.tflite", kit.hr / "img0.png")


@case("eval-flatbuffer-junk-tflite", "junk.tflite", "damaged TFLite model", needs="litert")
def _(t, kit, f):
    (t / "junk.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + np.random.default_rng(3).bytes(4000))
    return eval_argv(t, t / "junk.tflite", kit.hr)


@case("upscale-checkpoint-with-nan-weight", "nan.pt", "weights are not finite", "'body_conv1.weight'", "NaN")
def _(t, kit, f):
    return upscale_argv(t, checkpoint_with(t, kit, "nan.pt", float("nan")), kit.hr / "img0.png")


@case("upscale-image-output-is-the-input", "photo.png", "output is the input")
def _(t, kit, f):
    photo = write_png(t / "photo.png", rgb())
    return Setup(upscale_argv(t, kit.x4, photo, photo, ["--overwrite"]).argv, [], [photo])


@case("upscale-max-memory-negative", "argument --max-memory", "above 0", "'-5'")
def _(t, kit, f):
    return upscale_argv(t, kit.x4, kit.hr / "img0.png", extra=["--max-memory", "-5"])


@case("upscale-video-to-gif-from-frames", "out.gif", "cannot write .gif videos")
def _(t, kit, f):
    return upscale_argv(t, kit.x4, kit.hr, t / "out.gif")


# junk, truncated and foreign files of every kind ------------------------------------------------------------

@case("eval-truncated-tflite", "trunc.tflite", "TFLite", needs="litert")
def _(t, kit, f):
    data = f.tflite.read_bytes()
    (t / "trunc.tflite").write_bytes(data[: len(data) // 2])
    return eval_argv(t, t / "trunc.tflite", kit.hr)


@case("upscale-truncated-ort", "trunc.ort", "ORT-format model")
def _(t, kit, f):
    data = INT8_ORT.read_bytes()
    (t / "trunc.ort").write_bytes(data[: len(data) // 3])
    return upscale_argv(t, t / "trunc.ort", kit.hr / "img0.png")


@case("eval-foreign-ort", "relu.ort", "not an image model")
def _(t, kit, f):
    return eval_argv(t, f.foreign_ort, kit.hr)


@case("upscale-foreign-tflite", "add.tflite", "not an image model", needs="litert")
def _(t, kit, f):
    return upscale_argv(t, f.foreign_tflite, kit.hr / "img0.png")


@case("eval-junk-with-an-onnx-header", "fake.onnx", "cannot load this ONNX model")
def _(t, kit, f):
    (t / "fake.onnx").write_bytes(b"\x08\x07\x12\x04evil" + os.urandom(3000))
    return eval_argv(t, t / "fake.onnx", kit.hr)


@case("eval-empty-onnx", "empty.onnx", "is an empty file", "--model wants")
def _(t, kit, f):
    return eval_argv(t, existing(t / "empty.onnx", ""), kit.hr)


@case("upscale-executorch-program-with-no-plan", "m.pte", "ExecuTorch cannot load it", "re-export it")
def _(t, kit, f):
    (t / "m.pte").write_bytes(b"\x1c\x00\x00\x00ET12" + bytes(64))
    return upscale_argv(t, t / "m.pte", kit.hr / "img0.png")


@case("eval-model-package-folder", "m.mlpackage", "is a folder", "--model wants")
def _(t, kit, f):
    (t / "m.mlpackage" / "Data").mkdir(parents=True)
    return eval_argv(t, t / "m.mlpackage", kit.hr)


@case("export-zip-that-is-no-checkpoint", "notes.pt", "not a readable PyTorch checkpoint")
def _(t, kit, f):
    import zipfile
    with zipfile.ZipFile(t / "notes.pt", "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")
    return export_argv(t, t / "notes.pt")


@case("quantize-hdf5-as-weights", "patches.h5", "is an HDF5 file", "--weights wants")
def _(t, kit, f):
    return quantize_argv(t, kit.h5, kit.hr)


@case("eval-checkpoint-of-a-gigantic-network", "wide.pt", "channels must be an integer from 1 to 256")
def _(t, kit, f):
    ckpt = read_checkpoint(kit.x4)
    ckpt["arch"]["channels"] = 10**9
    torch.save(ckpt, t / "wide.pt")
    return eval_argv(t, t / "wide.pt", kit.hr)


@case("export-checkpoint-with-a-float-scale", "odd.pt", "unsupported scale")
def _(t, kit, f):
    ckpt = read_checkpoint(kit.x4)
    ckpt["arch"]["scale"] = 4.0
    torch.save(ckpt, t / "odd.pt")
    return export_argv(t, t / "odd.pt")


# weights that are not finite, in every format and every command --------------------------------------------

@case("eval-checkpoint-with-infinite-weight", "inf.pt", "weights are not finite", "infinite values")
def _(t, kit, f):
    return eval_argv(t, checkpoint_with(t, kit, "inf.pt", float("inf"), "tail.bias"), kit.hr)


@case("export-checkpoint-with-nan-weight", "nan.pt", "weights are not finite")
def _(t, kit, f):
    return export_argv(t, checkpoint_with(t, kit, "nan.pt", float("nan")))


@case("quantize-checkpoint-with-nan-weight", "nan.pt", "weights are not finite")
def _(t, kit, f):
    return quantize_argv(t, checkpoint_with(t, kit, "nan.pt", float("nan")), kit.hr)


@case("train-weights-with-nan", "nan.pt", "weights are not finite")
def _(t, kit, f):
    return train_argv(t, kit, extra=["--weights", str(checkpoint_with(t, kit, "nan.pt", float("nan")))])


@case("train-resume-from-a-state-with-nan", "last.pt", "weights are not finite")
def _(t, kit, f):
    (t / "run").mkdir()
    checkpoint_with(t / "run", kit, "last.pt", float("nan"))
    setup = train_argv(t, kit, extra=["--resume"])
    return Setup(setup.argv, [t / "run" / "model.pt"], [t / "run" / "last.pt"])


@case("export-qat-checkpoint-with-nan", "nan.qat.pt", "weights are not finite")
def _(t, kit, f):
    from elsr.export.onnx_int8 import qat_model_from_onnx
    from elsr.quant.checkpoint import save_qat_checkpoint

    qmodel = qat_model_from_onnx(INT8_ONNX)
    with torch.no_grad():
        next(qmodel.parameters()).view(-1)[0] = float("nan")
    save_qat_checkpoint(t / "nan.qat.pt", qmodel, [])
    return export_argv(t, kit.x4, t / "q.onnx", ["--int8", "--qat-checkpoint", str(t / "nan.qat.pt")])


@case("upscale-onnx-with-infinite-initializer", "inf.onnx", "weights are not finite", "infinite values")
def _(t, kit, f):
    return upscale_argv(t, onnx_with(PRETRAINED_ONNX, t / "inf.onnx", float("inf")), kit.hr / "img0.png")


@case("eval-int8-onnx-with-nan-scale", "nan_int8.onnx", "weights are not finite", "'head_w_scale'")
def _(t, kit, f):
    return eval_argv(t, onnx_with(INT8_ONNX, t / "nan_int8.onnx", float("nan"), "head_w_scale"), kit.hr)


@case("export-int8-onnx-source-with-nan-scale", "nan_int8.onnx", "weights are not finite")
def _(t, kit, f):
    source = onnx_with(INT8_ONNX, t / "nan_int8.onnx", float("nan"), "tail_w_scale")
    return export_argv(t, kit.x4, t / "q.ort", ["--format", "ort", "--int8", "--qat-checkpoint", str(source)])


@case("upscale-ort-with-nan-weight", "nan.ort", "weights are not finite")
def _(t, kit, f):
    return upscale_argv(t, ort_with(INT8_ORT, t / "nan.ort", float("nan")), kit.hr / "img0.png")


@case("eval-tflite-with-nan-weight", "nan.tflite", "weights are not finite", needs="litert")
def _(t, kit, f):
    return eval_argv(t, tflite_with(f.tflite, t / "nan.tflite", float("nan")), kit.hr)


@case("upscale-tflite-with-infinite-scale", "inf.tflite", "weights are not finite", "quantization scale",
      needs="litert")
def _(t, kit, f):
    from elsr.export import tflite as tflite_export
    from elsr.export.onnx_int8 import quant_params_from_onnx

    (t / "int8.tflite").write_bytes(tflite_export.int8_tflite(quant_params_from_onnx(INT8_ONNX)))
    return upscale_argv(t, tflite_with(t / "int8.tflite", t / "inf.tflite", float("inf"), scale=True),
                        kit.hr / "img0.png")


# ONNX external data -----------------------------------------------------------------------------------------

@case("eval-onnx-external-data-up-and-out", "m.onnx", "'../secret.bin'", "outside the model's folder")
def _(t, kit, f):
    return eval_argv(t, external_onnx(t / "model", "../secret.bin", t / "secret.bin"), kit.hr)


@case("upscale-onnx-external-data-absolute-path", "m.onnx", "outside the model's folder")
def _(t, kit, f):
    return upscale_argv(t, external_onnx(t / "model", str(t / "abs.bin"), t / "abs.bin"), kit.hr / "img0.png")


@case("eval-onnx-external-data-through-a-link", "m.onnx", "'link.bin'", "outside the model's folder")
def _(t, kit, f):
    shutil.copyfile(external_onnx(t / "tmp", "m.data").parent / "m.data", t / "outside.bin")
    model = external_onnx(t / "model", "link.bin")
    (t / "model" / "link.bin").symlink_to(t / "outside.bin")
    return eval_argv(t, model, kit.hr)


@case("export-onnx-external-data-missing", "m.onnx", "'gone.bin'", "missing")
def _(t, kit, f):
    source = external_onnx(t / "model", "gone.bin")
    return export_argv(t, kit.x4, t / "q.ort", ["--format", "ort", "--int8", "--qat-checkpoint", str(source)])


@case("eval-onnx-external-data-beyond-its-end", "m.onnx", "beyond the file's end")
def _(t, kit, f):
    model_path = external_onnx(t / "model", "m.data")
    model = onnx.load(str(model_path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "offset":
            entry.value = str(10**9)
    onnx.save(model, str(model_path))
    return eval_argv(t, model_path, kit.hr)


# paths ------------------------------------------------------------------------------------------------------

@case("upscale-output-is-a-link-to-the-input", "link.png", "output is the input")
def _(t, kit, f):
    photo = write_png(t / "photo.png", rgb())
    (t / "link.png").symlink_to(photo)
    return Setup(upscale_argv(t, kit.x4, photo, t / "link.png", ["--overwrite"]).argv, [], [photo])


@case("upscale-output-is-a-hard-link-to-the-input", "hard.png", "output is the input")
def _(t, kit, f):
    photo = write_png(t / "photo.png", rgb())
    os.link(photo, t / "hard.png")
    return Setup(upscale_argv(t, kit.x4, photo, t / "hard.png", ["--overwrite"]).argv, [], [photo])


@case("upscale-output-is-the-input-spelled-otherwise", "photo.png", "output is the input")
def _(t, kit, f):
    photo = write_png(t / "sub" / "photo.png", rgb())
    return Setup(upscale_argv(t, kit.x4, photo, t / "sub" / ".." / "sub" / "photo.png", ["--overwrite"]).argv,
                 [], [photo])


@case("upscale-video-output-is-the-input", "clip.mkv", "output is the input")
def _(t, kit, f):
    clip = write_clip(t / "clip.mkv", flat_frames(3))
    return Setup(upscale_argv(t, kit.x4, clip, t / "clip.mkv", ["--overwrite"]).argv, [], [clip])


@case("upscale-output-folder-inside-the-input-folder", "big", "is inside the input folder", "read back")
def _(t, kit, f):
    src = folder_with(t / "src", count=2, size=16)
    return upscale_argv(t, kit.x4, src, src / "big")


@case("upscale-frames-over-input-images", "out", "would be written over the input image")
def _(t, kit, f):
    write_png(t / "out" / "frames" / "frames" / "a.png", rgb(16, 16))   # written as out/frames/a.png ...
    write_png(t / "out" / "frames" / "a.png", rgb(16, 16, seed=2))       # ... which is this input
    setup = upscale_argv(t, kit.x4, t / "out" / "frames", t / "out", ["--overwrite"])
    return Setup(setup.argv, [], [t / "out" / "frames" / "a.png", t / "out" / "frames" / "frames" / "a.png"])


@case("upscale-image-into-its-own-folder", "here", "would be written over the input image")
def _(t, kit, f):
    photo = write_png(t / "here" / "photo.png", rgb())
    return Setup(upscale_argv(t, kit.x4, photo, t / "here", ["--overwrite"]).argv, [], [photo])


@case("upscale-image-to-gif", "big.gif", "cannot write .gif images")
def _(t, kit, f):
    return upscale_argv(t, kit.x4, kit.hr / "img0.png", t / "big.gif")


@case("upscale-video-to-avi", "big.avi", "cannot write .avi videos")
def _(t, kit, f):
    return upscale_argv(t, kit.x4, write_clip(t / "clip.mp4", flat_frames(3)), t / "big.avi")


@case("eval-json-over-an-input-image", "img0.png", "output is one of the files read from the input folder")
def _(t, kit, f):
    data = folder_with(t / "hr", count=2)
    setup = eval_argv(t, kit.x4, data, ["--json", str(data / "img0.png"), "--overwrite"])
    return Setup(setup.argv, [], [data / "img0.png"])


@case("eval-json-over-the-model", "x4.pt", "output is the input")
def _(t, kit, f):
    model = t / "x4.pt"
    shutil.copyfile(kit.x4, model)
    return Setup(eval_argv(t, model, kit.hr, ["--json", str(model), "--overwrite"]).argv, [], [model])


@case("prepare-output-is-a-source", "img0.png", "output is the input")
def _(t, kit, f):
    src = folder_with(t / "src", count=1, size=64)
    setup = prepare_argv(t, src / "img0.png", out=src / "img0.png", extra=["--overwrite"])
    return Setup(setup.argv, [], [src / "img0.png"])


@case("prepare-output-not-hdf5", "data.png", "prepare writes HDF5 files", ".h5")
def _(t, kit, f):
    return prepare_argv(t, kit.hr, out=t / "data.png")


@case("export-output-is-the-qat-source", "q.onnx", "output is the input")
def _(t, kit, f):
    source = t / "q.onnx"
    shutil.copyfile(INT8_ONNX, source)
    setup = export_argv(t, kit.x4, source, ["--int8", "--qat-checkpoint", str(source), "--overwrite"])
    return Setup(setup.argv, [], [source])


@case("quantize-output-suffix", "int8.ort", "writes an INT8 ONNX model", "*.onnx")
def _(t, kit, f):
    setup = quantize_argv(t, kit.x4, kit.hr)
    argv = [a if a != str(t / "int8.onnx") else str(t / "int8.ort") for a in setup.argv]
    return Setup(argv, [t / "int8.ort"])


@case("quantize-report-exists", "int8.report.md", "output exists", "--overwrite")
def _(t, kit, f):
    setup = quantize_argv(t, kit.x4, kit.hr)
    return Setup(setup.argv, [t / "int8.onnx"], [existing(t / "int8.report.md")])


@case("train-out-inside-the-training-folder", "run", "inside the input folder")
def _(t, kit, f):
    train = folder_with(t / "train", count=2)
    setup = train_argv(t, kit, train=train)
    argv = [a if a != str(t / "run") else str(train / "run") for a in setup.argv]
    return Setup(argv, [train / "run"])


@case("train-out-is-the-validation-folder", "val", "output is the input")
def _(t, kit, f):
    val = folder_with(t / "val", count=2)
    setup = train_argv(t, kit, val=val)
    argv = [a if a != str(t / "run") else str(val) for a in setup.argv]
    return Setup(argv, [val / "model.pt", val / "loss.png"])


@case("bench-out-inside-the-data-folder", "results", "inside the input folder")
def _(t, kit, f):
    data = folder_with(t / "hr", count=1)
    return Setup(bench_argv(t, kit, ["--data", str(data), "--out", str(data / "results")]).argv, [data / "results"])


@case("bench-markdown-over-the-weights", "w.pt", "output is the input")
def _(t, kit, f):
    weights = t / "w.pt"
    shutil.copyfile(kit.x4, weights)
    argv = [a if a != str(kit.x4) else str(weights) for a in bench_argv(t, kit, ["--markdown", str(weights)]).argv]
    return Setup(argv, [], [weights])


# numbers and memory -----------------------------------------------------------------------------------------

@case("upscale-tile-too-small", "argument --tile", "0 or an integer of at least 16")
def _(t, kit, f):
    return upscale_argv(t, kit.x4, kit.hr / "img0.png", extra=["--tile", "3"])


@case("upscale-fps-nan", "argument --fps", "'nan'")
def _(t, kit, f):
    return upscale_argv(t, kit.x4, kit.hr, t / "v.mp4", ["--fps", "nan"])


@case("train-threads-absurd", "argument --threads", "from 0 to 1024")
def _(t, kit, f):
    return train_argv(t, kit, extra=["--threads", "1000000"])


@case("quantize-lr-infinite", "argument --lr", "'inf'")
def _(t, kit, f):
    return quantize_argv(t, kit.x4, kit.hr, extra=["--lr", "inf"])


@case("upscale-whole-image-pass-beyond-the-budget", "wide.png", "needs about", "--max-memory 600 MB",
      "leave --tile out")
def _(t, kit, f):
    return upscale_argv(t, kit.x4, write_png(t / "wide.png", rgb(400, 400)), extra=["--tile", "0",
                                                                                     "--max-memory", "600"])


@case("upscale-jpeg-output-held-whole-beyond-the-budget", "big.png", "needs about", "write .png")
def _(t, kit, f):
    return upscale_argv(t, kit.x4, write_png(t / "big.png", np.zeros((3000, 3000, 3), np.uint8)), t / "big.jpg")


@case("upscale-png-whose-header-claims-a-huge-image", "bomb.png", "100000x100000 frame", "needs about")
def _(t, kit, f):
    return upscale_argv(t, kit.x4, png_claiming(t / "bomb.png", 100_000, 100_000))


@case("upscale-video-frames-beyond-the-budget", "wide.mkv", "needs about", "--max-memory 100 MB")
def _(t, kit, f):
    clip = write_clip(t / "wide.mkv", flat_frames(2, height=600, width=1200))
    return upscale_argv(t, kit.x4, clip, t / "big.mp4", ["--max-memory", "100"])


@case("bench-size-beyond-memory", "--size 100000x100000", "needs about", "are available")
def _(t, kit, f):
    return Setup(bench_argv(t, kit, ["--size", "100000x100000"]).argv)


@case("export-fixed-shape-beyond-memory", "--fixed-shape 64x3x20000x20000", "needs about", "are available")
def _(t, kit, f):
    return export_argv(t, kit.x4, extra=["--fixed-shape", "64x3x20000x20000"])


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A well-formed PNG whose header claims ``width`` x ``height`` pixels and whose data holds one row: what a
    decompression bomb looks like before it is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(1 + 3 * 64)))
                     + chunk(b"IEND", b""))
    return path


# YAML -------------------------------------------------------------------------------------------------------

def alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": nine lists of nine aliases of the list before, inside one value."""
    names = "abcdefghijk"
    parts = ['&a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    parts += [f"&{names[i]} [" + ", ".join([f"*{names[i - 1]}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


def schedule_text(t: Path, text_of_lr: str) -> Path:
    """The tiny schedule with ``text_of_lr`` as its first stage's learning rate."""
    path = tiny_schedule(t / "s.yaml")
    text = path.read_text()
    start = text.index("lr:") + len("lr:")
    path.write_text(text[:start] + " " + text_of_lr + text[text.index("\n", start):])
    return path


@case("train-schedule-alias-bomb", "s.yaml", "more than 100,000 values", "refused unread")
def _(t, kit, f):
    return train_argv(t, kit, schedule=schedule_text(t, alias_bomb()))


@case("train-schedule-alias-loop", "s.yaml", "refers to itself")
def _(t, kit, f):
    return train_argv(t, kit, schedule=schedule_text(t, "&loop [*loop]"))


@case("train-schedule-python-tag", "s.yaml", "tag:yaml.org,2002:python/object/apply:os.system", "refused")
def _(t, kit, f):
    return train_argv(t, kit, schedule=schedule_text(t, f"!!python/object/apply:os.system ['touch {t / 'pwned'}']"))


@case("train-schedule-custom-tag", "s.yaml", "'!include'", "refused")
def _(t, kit, f):
    return train_argv(t, kit, schedule=schedule_text(t, "!include /etc/passwd"))


@case("train-schedule-deep-nesting", "s.yaml", "nests")
def _(t, kit, f):
    return train_argv(t, kit, schedule=schedule_text(t, "[" * 5000 + "]" * 5000))


@case("train-schedule-huge-file", "s.yaml", "too large for a YAML schedule")
def _(t, kit, f):
    path = tiny_schedule(t / "s.yaml")
    path.write_text(path.read_text() + "# " + "x" * (2 << 20) + "\n")
    return train_argv(t, kit, schedule=path)


@case("train-schedule-binary", "s.yaml", "not a text (YAML) file")
def _(t, kit, f):
    (t / "s.yaml").write_bytes(b"\xff\xfe\x00garbage\x80")
    return train_argv(t, kit, schedule=t / "s.yaml")


# video ------------------------------------------------------------------------------------------------------

def mp4_box_edit(path: Path, box: bytes, edit: Callable[[bytearray, int], None]) -> Path:
    data = bytearray(path.read_bytes())
    edit(data, data.find(box))
    path.write_bytes(bytes(data))
    return path


def zero_sample_durations(data: bytearray, at: int) -> None:
    """stts: every run of samples 0 time units long (no frame rate, every frame at 0 s)."""
    for k in range(struct.unpack(">I", data[at + 8:at + 12])[0]):
        data[at + 16 + 8 * k:at + 20 + 8 * k] = bytes(4)


def zero_timescale(data: bytearray, at: int) -> None:
    """mdhd (version 0): a time scale of 0 units per second."""
    data[at + 16:at + 20] = bytes(4)


@case("upscale-video-without-frame-rate", "clip.mp4", "declares no frame rate")
def _(t, kit, f):
    clip = mp4_box_edit(write_clip(t / "clip.mp4", flat_frames(6)), b"stts", zero_sample_durations)
    return upscale_argv(t, kit.x4, clip, t / "big.mp4")


@case("upscale-video-with-zero-time-scale", "clip.mp4", "frame rate of", "outside 0.01..1000")
def _(t, kit, f):
    clip = mp4_box_edit(write_clip(t / "clip.mp4", flat_frames(6)), b"mdhd", zero_timescale)
    return upscale_argv(t, kit.x4, clip, t / "big.mkv")


@case("upscale-video-timestamps-that-do-not-advance", "clip.mkv", "does not come after frame")
def _(t, kit, f):
    return upscale_argv(t, kit.x4, write_clip(t / "clip.mkv", flat_frames(5), pts_ms=[0, 100, 100, 200, 300]),
                        t / "big.mp4")


@case("upscale-video-to-frames-without-frame-rate", "clip.mp4", "declares no frame rate")
def _(t, kit, f):
    clip = mp4_box_edit(write_clip(t / "clip.mp4", flat_frames(6)), b"stts", zero_sample_durations)
    return upscale_argv(t, kit.x4, clip, t / "frames")


@case("prepare-video-without-a-video-stream", "sound.mp4", "no video stream")
def _(t, kit, f):
    return prepare_argv(t, sound_only(t / "sound.mp4"))


@case("prepare-video-cut-off", "clip.mkv", "video stream ends early", subprocess=True)
def _(t, kit, f):
    from tests.helpers import damage
    return prepare_argv(t, damage(noise_clip(t / "clip.mkv"), "truncated"), extra=["--patch-size", "16",
                                                                                   "--stride", "16"])


@case("upscale-video-named-like-an-ffmpeg-protocol-is-that-file", "pipe:0.mp4", "no such file")
def _(t, kit, f):
    return upscale_argv(t, kit.x4, t / "pipe:0.mp4", t / "big.mp4")   # a missing file, never standard input


# a model whose metadata lies about its scale; sizes and rates a schedule or QAT cannot train with -----------

def onnx_claiming_scale(src: Path, dst: Path, scale: int) -> Path:
    """An ONNX model whose 'scale' metadata says ``scale`` (its graph left as it is)."""
    model = onnx.load(str(src))
    next(p for p in model.metadata_props if p.key == "scale").value = str(scale)
    onnx.save(model, str(dst))
    return dst


@case("upscale-onnx-whose-metadata-lies-about-its-scale", "liar.onnx", "into 64x64 pixels", "x2 scale")
def _(t, kit, f):
    liar = onnx_claiming_scale(PRETRAINED_ONNX, t / "liar.onnx", 2)
    return upscale_argv(t, liar, write_png(t / "small.png", rgb(16, 16)))


@case("upscale-video-with-a-model-lying-about-its-scale", "liar.onnx", "x2 scale")
def _(t, kit, f):
    liar = onnx_claiming_scale(PRETRAINED_ONNX, t / "liar.onnx", 2)
    return upscale_argv(t, liar, write_clip(t / "clip.mkv", flat_frames(3)), t / "big.mp4")


@case("eval-onnx-whose-metadata-lies-about-its-scale", "liar.onnx", "x3 scale")
def _(t, kit, f):
    return eval_argv(t, onnx_claiming_scale(PRETRAINED_ONNX, t / "liar.onnx", 3), kit.hr)


def schedule_value(t: Path, key: str, text: str) -> Path:
    """The tiny schedule with ``text`` as its first stage's ``key``."""
    path = tiny_schedule(t / "s.yaml")
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().lstrip("- ").startswith(f"{key}:"))
    lines[at] = lines[at][:lines[at].index(":") + 1] + " " + text
    path.write_text("\n".join(lines) + "\n")
    return path


@case("train-schedule-batch-beyond-memory", "s.yaml", "stage 'x2'", "needs about", "are available")
def _(t, kit, f):
    return train_argv(t, kit, schedule=schedule_value(t, "batch_size", str(10**9)))


@case("train-schedule-lr-overflowing-float", "s.yaml", "lr must be above 0 and at most 1", "1e+300")
def _(t, kit, f):
    return train_argv(t, kit, schedule=schedule_text(t, "1.0e+300"))


@case("train-schedule-growing-decay", "s.yaml", "gamma (a decay factor) above 0 and at most 1")
def _(t, kit, f):
    return train_argv(t, kit, schedule=schedule_value(t, "gamma", "2.0"))


@case("quantize-qat-batch-beyond-memory", "--batch-size and --patch-size", "needs about", "are available")
def _(t, kit, f):
    return quantize_argv(t, kit.x4, kit.hr, "qat", ["--val", str(kit.hr), "--batch-size", str(10**9)])


@case("upscale-model-is-a-named-pipe", "m.onnx", "is a device, pipe or socket", "--model wants")
def _(t, kit, f):
    os.mkfifo(t / "m.onnx")   # opened, it would block until a writer came
    return upscale_argv(t, t / "m.onnx", kit.hr / "img0.png")


@case("export-weights-is-a-device", "/dev/zero", "is a device, pipe or socket", "--weights wants")
def _(t, kit, f):
    return export_argv(t, Path("/dev/zero"))   # read, it would never end


@case("eval-json-named-like-an-image", "r.png", "--json writes a JSON file, not a .png file", "*.json")
def _(t, kit, f):
    return Setup(eval_argv(t, kit.x4, kit.hr, ["--json", str(t / "r.png")]).argv, [t / "r.png"])


@case("bench-markdown-named-like-json", "b.json", "write Markdown files, not a .json file")
def _(t, kit, f):
    return Setup(bench_argv(t, kit, ["--markdown", str(t / "b.json")]).argv, [t / "b.json"])


@case("eval-image-beyond-what-one-decoded-image-may-have", "bomb.jpg", "65000x65000 pixels", "1,073,741,824")
def _(t, kit, f):
    jpeg = bytearray(cv2.imencode(".jpg", rgb(16, 16))[1].tobytes())
    at = jpeg.find(b"\xff\xc0")
    jpeg[at + 5:at + 9] = (65000).to_bytes(2, "big") * 2   # the frame header's height and width
    (t / "hr").mkdir()
    (t / "hr" / "bomb.jpg").write_bytes(bytes(jpeg))
    return eval_argv(t, kit.x4, t / "hr")


def checkpoint_of_dtype(t: Path, kit: Kit, name: str, dtype: torch.dtype) -> Path:
    """kit.x4 with every weight cast to ``dtype``."""
    ckpt = read_checkpoint(kit.x4)
    ckpt["model"] = {k: v.to(dtype) for k, v in ckpt["model"].items()}
    torch.save(ckpt, t / name)
    return t / name


@case("upscale-checkpoint-with-integer-weights", "int.pt", "not real floating-point numbers", "torch.int64")
def _(t, kit, f):
    return upscale_argv(t, checkpoint_of_dtype(t, kit, "int.pt", torch.int64), kit.hr / "img0.png")


@case("eval-checkpoint-with-complex-weights", "complex.pt", "not real floating-point numbers", "complex64")
def _(t, kit, f):
    return eval_argv(t, checkpoint_of_dtype(t, kit, "complex.pt", torch.complex64), kit.hr)


# HDF5 patch files: data that is not uint8 pixels, or that lives in another file -------------------------------

def patches_h5(path: Path, hr: Callable | None = None, dtype=np.uint8) -> Path:
    """A patch file for the tiny schedule (x2 and x4, 32 px HR); ``hr(handle)`` makes its 'hr' entry instead."""
    pixels = np.random.default_rng(5).integers(0, 256, (4, 32, 32, 3)).astype(dtype)
    with h5py.File(path, "w") as handle:
        handle["lr_x2"], handle["lr_x4"] = pixels[:, ::2, ::2], pixels[:, ::4, ::4]
        if hr is None:
            handle["hr"] = pixels
        else:
            hr(handle)
    return path


@case("train-hdf5-float-patches", "nan.h5", "holds float32 values, not uint8 pixels")
def _(t, kit, f):
    return train_argv(t, kit, train=patches_h5(t / "nan.h5", dtype=np.float32))


@case("train-hdf5-hr-is-a-group", "group.h5", "'hr' is a group")
def _(t, kit, f):
    return train_argv(t, kit, train=patches_h5(t / "group.h5", lambda h: h.create_group("hr")))


@case("train-hdf5-link-to-another-file", "link.h5", "'hr' is a link (ExternalLink)")
def _(t, kit, f):
    other = patches_h5(t / "other.h5")
    return train_argv(t, kit, train=patches_h5(t / "link.h5", lambda h: h.__setitem__(
        "hr", h5py.ExternalLink(str(other), "/hr"))))


@case("quantize-hdf5-external-storage", "ext.h5", "keeps its data outside the file")
def _(t, kit, f):
    (t / "secret.bin").write_bytes(bytes(4 * 32 * 32 * 3))
    return quantize_argv(t, kit.x4, patches_h5(t / "ext.h5", lambda h: h.create_dataset(
        "hr", (4, 32, 32, 3), np.uint8, external=[(str(t / "secret.bin"), 0, 4 * 32 * 32 * 3)])))


# ---------------------------------------------------------------- running a case


@pytest.mark.parametrize("bad", [pytest.param(c, id=c.name) for c in CASES])
def test_hostile_input_is_refused_in_one_line(bad: Case, kit: Kit, files: Files, tmp_path: Path, capfd):
    if bad.needs == "litert":
        needs_litert(files)
    setup = bad.build(tmp_path, kit, files)
    before = {p: p.read_bytes() for p in setup.intact}
    listed = {p for p in tmp_path.rglob("*")}
    code, err = run_elsr(setup.argv, capfd, bad.subprocess)
    assert_refused(code, err, bad.expect)
    for path in setup.outputs:
        assert not path.exists(), f"{path} was written"
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path} was changed"
    assert not leftovers(tmp_path, kit.root)
    assert {p for p in tmp_path.rglob("*")} == listed, "new files appeared"
    assert not (tmp_path / "pwned").exists()


def test_the_second_catalogue_covers_every_family():
    names = " ".join(c.name for c in CASES)
    for word in ("tflite", "ort", "onnx", "nan", "external", "output-is", "inside", "budget", "schedule", "video",
                 "fps", "max-memory"):
        assert word in names, word
    assert len(CASES) >= 70


# ---------------------------------------------------------------- every numeric flag of every command line


def command_lines() -> list[tuple[Callable[[list[str]], int], list[str], argparse.ArgumentParser]]:
    """(main, argv prefix, parser) of every command line: each `elsr` subcommand, the benchmarks' modules and their
    subcommands (`python -m elsr.benchmarks` has the options of `elsr bench`)."""
    from elsr.cli import arm64, data_loading, large_image, video_bench
    from elsr.cli.main import COMMANDS, build_parser

    found = []
    for name in COMMANDS:
        found.append((main, [name], subcommands(build_parser(name))[name]))
    for module in (video_bench, data_loading, large_image, arm64):
        parser = module._parser()
        subs = subcommands(parser)
        found += [(module.main, [name], sub) for name, sub in subs.items()] if subs else [(module.main, [], parser)]
    return found


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def numeric_options() -> list[tuple[Callable, list[str], str, dict]]:
    """(main, argv prefix, option, limits) of every option typed by elsr.cli.numbers.number."""
    return [(run, prefix, action.option_strings[0], action.type.limits)
            for run, prefix, parser in command_lines() for action in parser._actions
            if action.option_strings and hasattr(action.type, "limits")]


def out_of_range(limits: dict) -> list[str]:
    """Values a flag with these limits must refuse: not a number, not finite, beyond each bound."""
    kind, low, high, above, also = (limits[k] for k in ("kind", "low", "high", "above", "also"))
    values = ["abc", "nan", "inf", "-inf"] + (["1.5"] if kind is int else [])
    step = 1 if kind is int else 1e-3
    values += [str(kind(low - step))] if low is not None and kind(low - step) not in also else []
    values += [str(above)] if above is not None else []
    values += [str(kind(high + step))] if high is not None else []
    return values


def test_every_numeric_flag_is_range_checked_by_the_one_type():
    plain = [(prefix, action.option_strings) for _, prefix, parser in command_lines() for action in parser._actions
             if action.type in (int, float)]
    assert not plain, f"numeric options without a range: {plain}"
    options = {option for _, _, option, _ in numeric_options()}
    assert {"--max-memory", "--tile", "--threads", "--fps", "--length", "--lr", "--workers", "--runs",
            "--crf", "--seed", "--epochs", "--crop", "--loops", "--dist-timeout"} <= options


@pytest.mark.parametrize("run, prefix, option, limits", [
    pytest.param(*entry, id=" ".join([*entry[1], entry[2]])) for entry in numeric_options()])
def test_out_of_range_values_of_every_numeric_flag_are_one_line(run, prefix, option, limits, capfd):
    for value in out_of_range(limits):
        capfd.readouterr()
        code = run([*prefix, f"{option}={value}"])   # "=": argparse takes "-inf" for an option otherwise
        err = capfd.readouterr().err
        assert_refused(code, err, (f"argument {option}", repr(value)))


def test_help_and_version_still_exit_0(capfd):
    assert main(["upscale", "--help"]) == 0 and "--max-memory" in capfd.readouterr().out
    assert main(["--version"]) == 0


# ---------------------------------------------------------------- names a careless user gives


def test_names_with_spaces_non_ascii_letters_and_protocol_prefixes_work(kit, files, tmp_path, capfd):
    home = tmp_path / "my files" / "Ünïcødé ß"
    weights = home / "modèle x4.pt"
    home.mkdir(parents=True)
    shutil.copyfile(kit.x4, weights)
    photo = write_png(home / "photo 1 é.png", rgb(24, 24))
    frames = folder_with(home / "frames ü", count=2, size=40)
    clip = write_clip(home / "pipe:clip 1.mp4", flat_frames(3))    # FFmpeg would read "pipe:" as its pipe
    onnx_model = home / "modèle.onnx"
    runs = [["upscale", "--model", str(weights), "--input", str(photo), "--output", str(home / "grand é.png")],
            ["upscale", "--model", str(weights), "--input", str(frames), "--output", str(home / "sortie ü")],
            ["upscale", "--model", str(weights), "--input", str(clip), "--output", str(home / "concat:big é.mkv")],
            ["eval", "--model", str(weights), "--data", str(frames), "--json", str(home / "scores ü.json")],
            ["export", "--weights", str(weights), "--out", str(onnx_model)],
            ["upscale", "--model", str(onnx_model), "--input", str(photo), "--output", str(home / "onnx é.png")],
            ["prepare", str(frames), "--out", str(home / "patches é.h5"), "--scales", "2", "--patch-size", "8",
             "--stride", "8"]]
    if files.tflite is not None:
        shutil.copyfile(files.tflite, home / "modèle ü.tflite")
        runs.append(["upscale", "--model", str(home / "modèle ü.tflite"), "--input", str(photo), "--output",
                     str(home / "tflite ü.png")])
    for argv in runs:
        code = main([argv[0], "-q", *argv[1:], *(["--device", "cpu"] if argv[0] != "prepare" else [])])
        assert code == 0, (argv, capfd.readouterr().err)
    for name in ("grand é.png", "sortie ü/img0.png", "concat:big é.mkv", "scores ü.json", "onnx é.png",
                 "patches é.h5"):
        assert (home / name).is_file(), name
    assert not leftovers(tmp_path)


# ---------------------------------------------------------------- a disk that is full, for real


@pytest.fixture
def small_disk(tmp_path):
    """``disk(size)``: a fresh tmpfs of that size (e.g. "64k"), unmounted afterwards; skips where mounting is not
    allowed (not root, no CAP_SYS_ADMIN, no tmpfs)."""
    mounted = []

    def disk(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(folder)
        return folder

    yield disk
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def noise_png(path: Path, size: int, seed: int = 0) -> Path:
    """Noise compresses badly: its PNG (and its upscaled PNG) is about as large as its pixels."""
    return write_png(path, np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8))


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` up to ``leave`` free bytes."""
    free = shutil.disk_usage(disk).free
    (disk / "filler").write_bytes(bytes(max(0, free - leave)))


def only(disk: Path, *names: str) -> None:
    assert sorted(p.name for p in disk.iterdir()) == sorted(names), list(disk.iterdir())


def test_outputs_that_cannot_fit_the_free_space_are_refused_before_any_work(kit, tmp_path, small_disk, capfd):
    disk = small_disk("64k")
    photo = noise_png(tmp_path / "noise.png", 200)
    code, err = run_elsr(upscale_argv(tmp_path, kit.x4, photo, disk / "big.png").argv, capfd)
    assert_refused(code, err, ("big.png", "needs at least about", "KiB on disk", "are free there"))
    only(disk)


@pytest.mark.parametrize("kind", ["image", "image-overwrite", "folder", "video", "prepare", "export", "eval-json"])
def test_a_disk_that_fills_mid_write_leaves_nothing(kind, kit, tmp_path, small_disk, capfd):
    """Each output passes the check before the work (its least size fits) and meets a full disk while written:
    one line, no output, no temporary file, an overwritten file unchanged."""
    disk = small_disk("1m")
    frames = tmp_path / "frames"
    for i in range(4):
        noise_png(frames / f"f{i}.png", 48, seed=i)
    old = existing(disk / "big.png") if kind == "image-overwrite" else None
    argv = {
        "image": upscale_argv(tmp_path, kit.x4, frames / "f0.png", disk / "big.png").argv,
        "image-overwrite": upscale_argv(tmp_path, kit.x4, frames / "f0.png", disk / "big.png", ["--overwrite"]).argv,
        "folder": upscale_argv(tmp_path, kit.x4, frames, disk / "out").argv,
        "video": upscale_argv(tmp_path, kit.x4, noise_clip(tmp_path / "clip.mkv"), disk / "big.mkv").argv,
        "prepare": prepare_argv(tmp_path, frames, out=disk / "p.h5", extra=["--patch-size", "16",
                                                                             "--stride", "4"]).argv,
        "export": export_argv(tmp_path, kit.x4, disk / "m.onnx").argv,
        "eval-json": eval_argv(tmp_path, kit.x4, kit.hr, ["--json", str(disk / "s.json")]).argv,
    }[kind]
    fill(disk, {"image": 20_000, "image-overwrite": 20_000, "folder": 60_000, "video": 60_000,
                "prepare": 4_000_000, "export": 8_000, "eval-json": 0}[kind])
    code, err = run_elsr(argv, capfd)
    assert_refused(code, err, ("No space left on device" if kind != "prepare" else "are free there",))
    only(disk, "filler", *(["big.png"] if old else []))
    if old:
        assert old.read_text() == "old contents"


# ---------------------------------------------------------------- the rest of each family


def test_an_alias_bomb_is_refused_quickly_and_merge_keys_still_work(tmp_path):
    from elsr.errors import ElsrError
    from elsr.io.safe_yaml import load_yaml
    from elsr.train.schedule import load_schedule

    (tmp_path / "bomb.yaml").write_text(f"value: {alias_bomb(10)}\n")   # 9**10 values as written out
    started = time.perf_counter()
    with pytest.raises(ElsrError, match="more than 100,000 values"):
        load_yaml(tmp_path / "bomb.yaml")
    assert time.perf_counter() - started < 2
    (tmp_path / "merge.yaml").write_text(
        "base: &base {scale: 2, patch_size: 8, batch_size: 4, loss: l1, lr: 0.001, epochs: 1, init: scratch}\n")
    spec = load_yaml(tmp_path / "merge.yaml")["base"]
    (tmp_path / "s.yaml").write_text("name: merged\nstages:\n  - &first {name: a, " + ", ".join(
        f"{k}: {v}" for k, v in spec.items()) + "}\n  - {<<: *first, name: b, init: previous}\n")
    stages = load_schedule(tmp_path / "s.yaml").stages
    assert [s.name for s in stages] == ["a", "b"] and stages[1].lr == 0.001


def test_external_data_outside_the_folder_is_refused_before_it_is_opened(kit, tmp_path):
    """The data "file" outside is a FIFO: opening it to read would block forever, so a refusal in time proves
    nothing was read (a real subprocess, so that a hang is a timeout, not a stuck test run)."""
    os.mkfifo(tmp_path / "fifo")
    model = external_onnx(tmp_path / "model", "../fifo")
    code, err = run_elsr(eval_argv(tmp_path, model, kit.hr).argv, None, in_subprocess=True)
    assert_refused(code, err, ("m.onnx", "'../fifo'", "outside the model's folder"))


def test_bench_reports_a_checkpoint_with_nan_as_a_failed_row(kit, tmp_path, capfd):
    nan = checkpoint_with(tmp_path, kit, "nan.pt", float("nan"))
    argv = bench_argv(tmp_path, kit).argv
    code = main([a if a != str(kit.x4) else str(nan) for a in argv])
    out = capfd.readouterr().out
    assert code == 0 and "weights are not finite" in out


def test_staged_frames_appear_only_when_all_are_written(kit, tmp_path, monkeypatch, capfd):
    """A failure after some frames (here the third one's write) leaves an existing output folder as it was."""
    from elsr.io import pngstream

    frames = folder_with(tmp_path / "frames", count=4, size=16)
    out = tmp_path / "out"
    old = existing(out / "img0.png", "old frame")
    real, calls = pngstream.png_writer, []

    def failing(path, *args, **kw):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, os.strerror(28))
        return real(path, *args, **kw)
    monkeypatch.setattr("elsr.runtime.upscale.png_writer", failing)
    code, err = run_elsr(upscale_argv(tmp_path, kit.x4, frames, out, ["--overwrite"]).argv, capfd)
    assert_refused(code, err, ("No space left on device",))
    assert sorted(p.name for p in out.iterdir()) == ["img0.png"] and old.read_text() == "old frame"
    assert not leftovers(tmp_path) and not list(tmp_path.glob(".out.*"))
