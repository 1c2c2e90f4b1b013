"""The catalogue of bad inputs, every command: one line on stderr, exit code 2, no traceback, no partial output.

Each case builds its bad input in ``tmp_path``, runs ``elsr`` (in-process through ``elsr.cli.main`` with
file-descriptor capture, so C libraries writing to stderr are caught too; a few as real subprocesses) and
checks: exit code 2; stderr is exactly one line starting ``elsr: error:`` that names the file and the
problem; no traceback; the outputs the command would have written do not exist (or are unchanged when they
existed before) and no temporary file (``.*.tmp``) is left anywhere. The commands run with ``-q`` so that
progress log lines do not mix with the error line.

Cases marked xfail are failures in files other engineers are editing right now; they are listed with the
fix they need and must pass once it is made (strict).
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import h5py
import numpy as np
import onnx
import pytest
import torch
import yaml
from onnx import TensorProto, helper

from elsr.cli.main import main
from elsr.model.checkpoint import read_checkpoint, save_checkpoint
from elsr.model.network import ELSR, ModelConfig
from tests.helpers import (damage, flat_frames, image_folder, noise_clip, smooth_image, sound_only, tiny_schedule,
                           write_clip, write_png, write_video)

REPO = Path(__file__).resolve().parents[1]
PRETRAINED_ONNX = REPO / "elsr" / "pretrained" / "elsr_x4.onnx"
ERROR_PREFIX = "elsr: error: "


# ---------------------------------------------------------------- shared, valid inputs


@dataclass(frozen=True)
class Kit:
    """Valid inputs shared by every case (never modified by a case)."""

    root: Path
    x4: Path          # ELSR x4 checkpoint
    x2: Path          # ELSR x2 checkpoint
    hr: Path          # folder of two 48x48 RGB images
    h5: Path          # a small valid HDF5 patch file (x2 and x4)
    schedule: Path    # tests.helpers.tiny_schedule


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Kit:
    root = tmp_path_factory.mktemp("kit")
    torch.manual_seed(0)
    save_checkpoint(root / "x4.pt", ELSR(ModelConfig(scale=4)))
    save_checkpoint(root / "x2.pt", ELSR(ModelConfig(scale=2)))
    rng = np.random.default_rng(0)
    hr = image_folder(root / "hr", rng, 2, (48, 48))
    h5 = root / "patches.h5"
    with h5py.File(h5, "w") as f:
        f["hr"] = np.stack([smooth_image(rng, 32, 32) for _ in range(8)])
        f["lr_x2"] = f["hr"][:, ::2, ::2]
        f["lr_x4"] = f["hr"][:, ::4, ::4]
        f["lr"] = f["lr_x2"]
    return Kit(root, root / "x4.pt", root / "x2.pt", hr, h5, tiny_schedule(root / "tiny.yaml"))


# ---------------------------------------------------------------- bad-input builders


def rgb(height: int = 48, width: int = 48, seed: int = 1) -> np.ndarray:
    return smooth_image(np.random.default_rng(seed), height, width)


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image[:, :, ::-1] if image.ndim == 3 and image.shape[2] == 3 else image)
    assert ok
    return buf.tobytes()


def truncated_png(path: Path) -> Path:
    data = png_bytes(rgb())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_jpeg(path: Path) -> Path:
    ok, buf = cv2.imencode(".jpg", rgb()[:, :, ::-1])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes()[: len(buf) * 2 // 3])
    return path


def unusual_png(path: Path, kind: str, size: int = 48) -> Path:
    """A greyscale, RGBA or 16-bit PNG."""
    image = rgb(size, size)
    pixels = {"greyscale": image[:, :, 0],
              "RGBA": np.dstack([image[:, :, ::-1], np.full((size, size), 200, np.uint8)]),
              "16-bit": image[:, :, ::-1].astype(np.uint16) * 257}[kind]
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels)
    return path


def folder_with(root: Path, *extra: Callable[[Path], Path], count: int = 1, size: int = 48) -> Path:
    """A folder of ``count`` good images plus whatever the ``extra`` builders put in it."""
    image_folder(root, np.random.default_rng(2), count, (size, size))
    for build in extra:
        build(root)
    return root


def parent_is_a_file(t: Path) -> Path:
    """An output path inside a 'folder' that is really a file: unwritable even for root."""
    (t / "afile").write_text("not a folder")
    return t / "afile" / "out"


def garbage_video(path: Path) -> Path:
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2048))
    return path


def truncated_checkpoint(t: Path, kit: Kit) -> Path:
    data = kit.x4.read_bytes()
    (t / "trunc.pt").write_bytes(data[: len(data) // 2])
    return t / "trunc.pt"


def foreign_state_dict(t: Path) -> Path:
    """A state dict of some other network."""
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.bias": torch.zeros(10)}, t / "resnet.pt")
    return t / "resnet.pt"


def other_arch_checkpoint(t: Path, kit: Kit) -> Path:
    """An elsr-format checkpoint whose architecture is another network."""
    ckpt = read_checkpoint(kit.x4)
    ckpt["arch"] = {"name": "fsrcnn", "scale": 4}
    torch.save(ckpt, t / "fsrcnn.pt")
    return t / "fsrcnn.pt"


def wide_checkpoint(t: Path, scale: int = 2) -> Path:
    """ELSR weights with 8 hidden channels, recorded as the usual 6: a different architecture in disguise."""
    ckpt = {"format": "elsr-checkpoint", "version": 1, "arch": ModelConfig(scale=scale).to_dict(),
            "model": ELSR(ModelConfig(scale=scale, channels=8)).state_dict(), "meta": {}}
    torch.save(ckpt, t / "wide.pt")
    return t / "wide.pt"


def truncated_onnx(t: Path) -> Path:
    data = PRETRAINED_ONNX.read_bytes()
    (t / "trunc.onnx").write_bytes(data[: len(data) // 2])
    return t / "trunc.onnx"


def relu_onnx(path: Path, shape: list) -> Path:
    """A foreign ONNX model: one Relu."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def h5_file(path: Path, **datasets: tuple) -> Path:
    with h5py.File(path, "w") as f:
        for name, shape in datasets.items():
            f[name] = np.zeros(shape, np.uint8)
    return path


def truncated_h5(t: Path, kit: Kit) -> Path:
    data = kit.h5.read_bytes()
    (t / "trunc.h5").write_bytes(data[: len(data) // 2])
    return t / "trunc.h5"


def schedule_with(t: Path, edit: Callable[[dict], None]) -> Path:
    path = tiny_schedule(t / "s.yaml")
    spec = yaml.safe_load(path.read_text())
    edit(spec)
    path.write_text(yaml.safe_dump(spec))
    return path


class RunsCode:
    """Unpickling this calls ``open(marker, 'w')``: a stand-in for any code an attacker would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def evil_checkpoint(t: Path, zipped: bool = True) -> Path:
    """A checkpoint that would create ``t/pwned`` when loaded without weights_only."""
    path = t / "evil.pt"
    payload = {"format": "elsr-checkpoint", "model": RunsCode(t / "pwned")}
    if zipped:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    return path


# ---------------------------------------------------------------- the table


@dataclass
class Setup:
    argv: list[str]
    outputs: list[Path] = field(default_factory=list)   # must not exist afterwards
    intact: list[Path] = field(default_factory=list)    # existed before, must be unchanged afterwards


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, Kit], Setup]
    expect: tuple[str, ...]       # phrases of the error line; the first names the file
    xfail: str | None = None      # why it fails now (a file another engineer owns)
    subprocess: bool = False      # run as `python -m elsr` instead of in-process
    patch: Callable[[pytest.MonkeyPatch, Kit], None] | None = None  # in-process only


CASES: list[Case] = []


def case(name: str, *expect: str, **options):
    def register(build):
        CASES.append(Case(name, build, expect, **options))
        return build
    return register


def prepare_argv(t: Path, *sources: Path, out: Path | None = None, extra=()) -> Setup:
    out = out or t / "data.h5"
    return Setup(["prepare", "-q", *map(str, sources), "--out", str(out), "--scales", "4", "--patch-size", "32",
                  "--stride", "32", *extra], [out])


def train_argv(t: Path, kit: Kit, train: Path | None = None, val: Path | None = None,
               schedule: Path | None = None, extra=()) -> Setup:
    out = t / "run"
    return Setup(["train", "-q", "--schedule", str(schedule or kit.schedule), "--train", str(train or kit.hr),
                  "--val", str(val or kit.hr), "--out", str(out), "--device", "cpu", "--threads", "1",
                  "--workers", "0", "--no-progress", *extra],
                 # a run stopped by bad input leaves no checkpoint, metrics or model (schedule.json may be there)
                 [out / "model.pt", out / "last.pt", out / "summary.json", out / "metrics.csv", out / "stage1_x2"])


def eval_argv(t: Path, model: Path, data: Path, extra=()) -> Setup:
    return Setup(["eval", "-q", "--model", str(model), "--data", str(data), "--device", "cpu", *extra])


def upscale_argv(t: Path, model: Path, source: Path, out: Path | None = None, extra=()) -> Setup:
    out = out or t / "out.png"
    return Setup(["upscale", "-q", "--model", str(model), "--input", str(source), "--output", str(out),
                  "--device", "cpu", "--no-progress", *extra], [out])


def export_argv(t: Path, weights: Path, out: Path | None = None, extra=()) -> Setup:
    out = out or t / "m.onnx"
    return Setup(["export", "-q", "--weights", str(weights), "--out", str(out), "--device", "cpu", *extra], [out])


def quantize_argv(t: Path, weights: Path, train: Path, method: str = "ptq", extra=()) -> Setup:
    out = t / "int8.onnx"
    return Setup(["quantize", "-q", "--weights", str(weights), "--method", method, "--train", str(train),
                  "--out", str(out), "--device", "cpu", "--no-progress", "--epochs", "1", "--iters", "1",
                  "--patch-size", "8", "--batch-size", "2", *extra],
                 [out, t / "int8_ptq.onnx", t / "int8.qat.pt", t / "int8.report.md", t / "int8.report.json"])


def bench_argv(t: Path, kit: Kit, extra=()) -> Setup:
    return Setup(["bench", "-q", "--weights", str(kit.x4), "--backends", "torch-cpu", "--runs", "1", "--warmup", "0",
                  "--size", "12x12", "--threads", "1", *extra])


def existing(path: Path, text: str = "old contents") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# prepare ---------------------------------------------------------------------------------------------------

@case("prepare-missing-source", "nowhere", "no such file or folder")
def _(t, kit):
    return prepare_argv(t, t / "nowhere")


@case("prepare-empty-folder", "empty", "holds no images")
def _(t, kit):
    (t / "empty").mkdir()
    return prepare_argv(t, t / "empty")


@case("prepare-truncated-png", "broken.png", "truncated")
def _(t, kit):
    return prepare_argv(t, folder_with(t / "src", lambda d: truncated_png(d / "broken.png")))


@case("prepare-text-file-named-png", "notes.png", "cannot decode image")
def _(t, kit):
    return prepare_argv(t, folder_with(t / "src", lambda d: existing(d / "notes.png", "shopping list")))


@case("prepare-greyscale", "grey.png", "greyscale", "--convert")
def _(t, kit):
    return prepare_argv(t, folder_with(t / "src", lambda d: unusual_png(d / "grey.png", "greyscale")))


@case("prepare-16-bit", "deep.png", "16-bit", "--convert")
def _(t, kit):
    return prepare_argv(t, folder_with(t / "src", lambda d: unusual_png(d / "deep.png", "16-bit")))


@case("prepare-all-images-smaller-than-patch", "small", "smaller than the 32x32 patch", "--patch-size")
def _(t, kit):
    return prepare_argv(t, folder_with(t / "small", count=2, size=20))


@case("prepare-output-exists", "data.h5", "already exists", "--overwrite")
def _(t, kit):
    setup = prepare_argv(t, kit.hr, out=existing(t / "data.h5"))
    return Setup(setup.argv, [], [t / "data.h5"])


@case("prepare-output-folder-is-a-file", "afile", "cannot write")
def _(t, kit):
    return prepare_argv(t, kit.hr, out=parent_is_a_file(t) / "data.h5")


@case("prepare-unreadable-video", "clip.mp4", "cannot open video")
def _(t, kit):
    return prepare_argv(t, garbage_video(t / "clip.mp4"))


@case("prepare-reds-lr-shape-mismatch", "00000000.png", "official LR frame is 10x10", "--reds-lr")
def _(t, kit):
    write_png(t / "sharp" / "000" / "00000000.png", rgb(64, 64))
    write_png(t / "sharp_lr" / "000" / "00000000.png", rgb(10, 10))
    return prepare_argv(t, t / "sharp", extra=["--reds-lr", str(t / "sharp_lr")])


# train -----------------------------------------------------------------------------------------------------

@case("train-missing-train-folder", "nowhere", "does not exist")
def _(t, kit):
    return train_argv(t, kit, train=t / "nowhere")


@case("train-empty-val-folder", "emptyval", "holds no images")
def _(t, kit):
    (t / "emptyval").mkdir()
    return train_argv(t, kit, val=t / "emptyval")


@case("train-rgba-val-image", "alpha.png", "RGBA", "--convert")
def _(t, kit):
    return train_argv(t, kit, val=folder_with(t / "val", lambda d: unusual_png(d / "alpha.png", "RGBA")))


@case("train-truncated-hdf5", "trunc.h5", "not a readable HDF5 file", subprocess=True)
def _(t, kit):
    return train_argv(t, kit, train=truncated_h5(t, kit))


@case("train-text-file-named-h5", "notes.h5", "not a readable HDF5 file")
def _(t, kit):
    return train_argv(t, kit, train=existing(t / "notes.h5", "not hdf5"))


@case("train-foreign-hdf5", "foreign.h5", "no 'hr' dataset", "elsr prepare")
def _(t, kit):
    return train_argv(t, kit, train=h5_file(t / "foreign.h5", images=(4, 32, 32, 3)))


@case("train-hdf5-lr-hr-shape-mismatch", "mismatch.h5", "not x2 apart")
def _(t, kit):
    return train_argv(t, kit, train=h5_file(t / "mismatch.h5", hr=(4, 32, 32, 3), lr_x2=(4, 20, 20, 3)))


@case("train-all-images-smaller-than-patch", "small", "no training image is large enough", "patch_size")
def _(t, kit):
    return train_argv(t, kit, train=folder_with(t / "small", count=2, size=12))


@case("train-schedule-unknown-key", "s.yaml", "unknown key 'warmup'", "allowed keys")
def _(t, kit):
    return train_argv(t, kit, schedule=schedule_with(t, lambda s: s["stages"][0].update(warmup=5)))


@case("train-schedule-wrong-type", "s.yaml", "stages[0].lr must be float, got 'fast'")
def _(t, kit):
    return train_argv(t, kit, schedule=schedule_with(t, lambda s: s["stages"][0].update(lr="fast")))


@case("train-schedule-negative-epochs", "s.yaml", "epochs must be positive, got -2")
def _(t, kit):
    return train_argv(t, kit, schedule=schedule_with(t, lambda s: s["stages"][1].update(epochs=-2)))


@case("train-schedule-invalid-yaml", "s.yaml", "invalid YAML at line")
def _(t, kit):
    path = existing(t / "s.yaml", "name: tiny\nstages: [ {name: x2, scale: 2\n")
    return train_argv(t, kit, schedule=path)


@case("train-schedule-not-a-mapping", "s.yaml", "schedule must be a mapping, got list")
def _(t, kit):
    return train_argv(t, kit, schedule=existing(t / "s.yaml", "- x2\n- x4\n"))


@case("train-schedule-empty-file", "s.yaml", "the schedule file is empty")
def _(t, kit):
    return train_argv(t, kit, schedule=existing(t / "s.yaml", ""))


@case("train-schedule-negative-seed", "s.yaml", "seed: must be 0 or positive, got -1")
def _(t, kit):
    return train_argv(t, kit, schedule=schedule_with(t, lambda s: s.update(seed=-1)))


@case("train-schedule-infinite-lr", "s.yaml", "lr must be above 0 and at most 1, got inf")
def _(t, kit):
    return train_argv(t, kit, schedule=schedule_with(t, lambda s: s["stages"][0].update(lr=float("inf"))))


@case("train-schedule-stage-name-is-a-path", "s.yaml", "stage '../x2'", "names a folder")
def _(t, kit):
    return train_argv(t, kit, schedule=schedule_with(t, lambda s: s["stages"][0].update(name="../x2")))


@case("train-run-exists", "run", "already exists", "--resume")
def _(t, kit):
    setup = train_argv(t, kit)
    return Setup(setup.argv, [t / "run" / "model.pt"], [existing(t / "run" / "last.pt")])


@case("train-weights-other-architecture", "wide.pt", "do not fit")
def _(t, kit):
    return train_argv(t, kit, extra=["--weights", str(wide_checkpoint(t))])


@case("train-weights-truncated", "trunc.pt", "not a readable PyTorch checkpoint")
def _(t, kit):
    return train_argv(t, kit, extra=["--weights", str(truncated_checkpoint(t, kit))])


# eval ------------------------------------------------------------------------------------------------------

@case("eval-missing-data-folder", "nowhere", "no such file or folder")
def _(t, kit):
    return eval_argv(t, kit.x4, t / "nowhere")


@case("eval-missing-model", "none.pt", "no such checkpoint file")
def _(t, kit):
    return eval_argv(t, t / "none.pt", kit.hr)


@case("eval-x2-checkpoint-as-x4", "x2.pt", "x2 model but x4 was asked", "--scale 2")
def _(t, kit):
    return eval_argv(t, kit.x2, kit.hr, extra=["--scale", "4"])


@case("eval-truncated-checkpoint", "trunc.pt", "not a readable PyTorch checkpoint")
def _(t, kit):
    return eval_argv(t, truncated_checkpoint(t, kit), kit.hr)


@case("eval-foreign-state-dict", "resnet.pt", "no tensor 'head.weight'", "not an ELSR")
def _(t, kit):
    return eval_argv(t, foreign_state_dict(t), kit.hr)


@case("eval-other-architecture-checkpoint", "fsrcnn.pt", "'fsrcnn' model, not ELSR")
def _(t, kit):
    return eval_argv(t, other_arch_checkpoint(t, kit), kit.hr)


@case("eval-truncated-onnx", "trunc.onnx", "cannot load this ONNX model")
def _(t, kit):
    return eval_argv(t, truncated_onnx(t), kit.hr)


@case("eval-foreign-onnx", "relu.onnx", "not an image model")
def _(t, kit):
    return eval_argv(t, relu_onnx(t / "relu.onnx", ["n", 16]), kit.hr)


@case("eval-foreign-image-onnx-scale-1", "relu4d.onnx", "x1", "not a super-resolution model")
def _(t, kit):
    return eval_argv(t, relu_onnx(t / "relu4d.onnx", ["n", 3, "h", "w"]), kit.hr)


@case("eval-lr-hr-shape-mismatch", "img0.png", "does not match HR")
def _(t, kit):
    write_png(t / "lr" / "img0.png", rgb(10, 10))
    return eval_argv(t, kit.x4, kit.hr, extra=["--lr", str(t / "lr")])


@case("eval-image-smaller-than-receptive-field", "tiny.png", "smaller than", "9x9")
def _(t, kit):
    return eval_argv(t, kit.x4, folder_with(t / "hr", lambda d: write_png(d / "tiny.png", rgb(24, 24))))


@case("eval-greyscale-image", "grey.png", "greyscale", "--convert")
def _(t, kit):
    return eval_argv(t, kit.x4, folder_with(t / "hr", lambda d: unusual_png(d / "grey.png", "greyscale")))


@case("eval-palette-png-with-transparency", "clear.png", "RGBA image", "--convert")
def _(t, kit):
    from PIL import Image

    def build(folder: Path) -> Path:
        image = Image.fromarray(rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        image.save(folder / "clear.png", transparency=0)  # a palette with a transparent entry: alpha matters
        return folder / "clear.png"
    return eval_argv(t, kit.x4, folder_with(t / "hr", build))


@case("eval-json-exists", "scores.json", "exists", "--overwrite")
def _(t, kit):
    return Setup(eval_argv(t, kit.x4, kit.hr, extra=["--json", str(existing(t / "scores.json"))]).argv,
                 [], [t / "scores.json"])


@case("eval-json-folder-is-a-file", "afile", "cannot write")
def _(t, kit):
    out = parent_is_a_file(t) / "scores.json"
    return Setup(eval_argv(t, kit.x4, kit.hr, extra=["--json", str(out)]).argv, [out])


@case("eval-unknown-model-type", "model.bin", "is a text file; --model wants a PyTorch checkpoint")
def _(t, kit):
    return eval_argv(t, existing(t / "model.bin"), kit.hr)


# upscale ---------------------------------------------------------------------------------------------------

@case("eval-text-file-named-pte", "notes.pte", "is a text file; --model wants")
def _(t, kit):
    (t / "notes.pte").write_text("an ExecuTorch program, honest\n")
    return eval_argv(t, t / "notes.pte", kit.hr)


@case("upscale-folder-named-mlpackage", "empty.mlpackage", "is a folder; --model wants")
def _(t, kit):
    (t / "empty.mlpackage").mkdir()
    return upscale_argv(t, t / "empty.mlpackage", kit.hr / "img0.png")


@case("upscale-mlpackage-off-apple", "m.mlpackage", "not run: Core ML runs on Apple platforms")
def _(t, kit):
    (t / "m.mlpackage").mkdir()
    (t / "m.mlpackage" / "Manifest.json").write_text("{}")
    return upscale_argv(t, t / "m.mlpackage", kit.hr / "img0.png")


@case("upscale-missing-input", "nowhere.png", "no such file or folder")
def _(t, kit):
    return upscale_argv(t, kit.x4, t / "nowhere.png")


@case("upscale-empty-folder", "empty", "holds no images")
def _(t, kit):
    (t / "empty").mkdir()
    return upscale_argv(t, kit.x4, t / "empty", t / "outdir")


@case("upscale-output-exists", "out.png", "output exists", "--overwrite")
def _(t, kit):
    return Setup(upscale_argv(t, kit.x4, kit.hr / "img0.png").argv, [], [existing(t / "out.png")])


@case("upscale-output-folder-is-a-file", "afile", "cannot write")
def _(t, kit):
    return upscale_argv(t, kit.x4, kit.hr / "img0.png", parent_is_a_file(t) / "big.png")


@case("upscale-unknown-output-type", "out.txt", "cannot write", ".png")
def _(t, kit):
    return upscale_argv(t, kit.x4, kit.hr / "img0.png", t / "out.txt")


@case("upscale-unreadable-video", "clip.mp4", "cannot open video", subprocess=True)
def _(t, kit):
    return upscale_argv(t, kit.x4, garbage_video(t / "clip.mp4"), t / "big.mp4")


@case("upscale-video-frames-smaller-than-receptive-field", "clip.avi", "its frame is 8x6 pixels", "9x9")
def _(t, kit):
    return upscale_argv(t, kit.x4, write_video(t / "clip.avi", [rgb(6, 8, seed=i) for i in range(3)]), t / "big.mp4")


@case("upscale-video-without-a-video-stream", "sound.mp4", "no video stream", "audio streams only")
def _(t, kit):
    return upscale_argv(t, kit.x4, sound_only(t / "sound.mp4"), t / "big.mp4")


@case("upscale-video-broken-mid-file", "clip.mp4", "video stream broken after frame", subprocess=True)
def _(t, kit):
    return upscale_argv(t, kit.x4, damage(noise_clip(t / "clip.mp4"), "corrupted"), t / "big.mp4")


@case("upscale-video-cut-off-mid-file", "clip.mkv", "video stream ends early", subprocess=True)
def _(t, kit):
    return upscale_argv(t, kit.x4, damage(noise_clip(t / "clip.mkv"), "truncated"), t / "big.mkv")


@case("upscale-video-codec-the-container-cannot-hold", "big.webm", "cannot hold h264 video", "--codec av1 or vp9")
def _(t, kit):
    return upscale_argv(t, kit.x4, write_clip(t / "clip.mp4", flat_frames(3)), t / "big.webm", ["--codec", "h264"])


@case("upscale-video-audio-the-container-cannot-hold", "big.webm", "cannot hold the input's aac audio", ".mkv")
def _(t, kit):
    return upscale_argv(t, kit.x4, write_clip(t / "clip.mp4", flat_frames(3), audio="aac"), t / "big.webm")


@case("upscale-video-to-gif", "big.gif", "cannot write .gif videos", ".mp4")
def _(t, kit):
    return upscale_argv(t, kit.x4, write_clip(t / "clip.mp4", flat_frames(3)), t / "big.gif")


@case("upscale-video-to-txt", "big.txt", "cannot write .txt videos", "folder name without a suffix")
def _(t, kit):
    return upscale_argv(t, kit.x4, write_clip(t / "clip.mp4", flat_frames(3)), t / "big.txt")


@case("upscale-output-is-the-input", "clip.mp4", "output is the input")
def _(t, kit):
    clip = write_clip(t / "clip.mp4", flat_frames(3))
    return Setup(upscale_argv(t, kit.x4, clip, clip, ["--overwrite"]).argv, [], [clip])


@case("upscale-frames-of-two-sizes-to-a-video", "img1.png", "a video's frames must have one size")
def _(t, kit):
    write_png(t / "frames" / "img0.png", rgb(24, 32))
    write_png(t / "frames" / "img1.png", rgb(24, 40))
    return upscale_argv(t, kit.x4, t / "frames", t / "big.mp4")


@case("upscale-truncated-jpeg", "broken.jpg", "truncated")
def _(t, kit):
    return upscale_argv(t, kit.x4, truncated_jpeg(t / "broken.jpg"))


@case("upscale-folder-with-a-truncated-png", "zz_broken.png", "truncated PNG file")
def _(t, kit):
    src = folder_with(t / "src", lambda d: truncated_png(d / "zz_broken.png"), count=2, size=16)
    return upscale_argv(t, kit.x4, src, t / "outdir")  # the last file: checked before img0.png is written


@case("upscale-rgba", "alpha.png", "RGBA", "--convert")
def _(t, kit):
    return upscale_argv(t, kit.x4, unusual_png(t / "alpha.png", "RGBA"))


@case("upscale-16-bit", "deep.png", "16-bit", "--convert")
def _(t, kit):
    return upscale_argv(t, kit.x4, unusual_png(t / "deep.png", "16-bit"))


@case("upscale-image-smaller-than-receptive-field", "tiny.png", "6x5", "smaller than", "9x9")
def _(t, kit):
    return upscale_argv(t, kit.x4, write_png(t / "tiny.png", rgb(5, 6)))


@case("upscale-truncated-onnx", "trunc.onnx", "cannot load this ONNX model")
def _(t, kit):
    return upscale_argv(t, truncated_onnx(t), kit.hr / "img0.png")


@case("upscale-other-architecture-checkpoint", "wide.pt", "do not fit")
def _(t, kit):
    return upscale_argv(t, wide_checkpoint(t, scale=4), kit.hr / "img0.png")


# export ----------------------------------------------------------------------------------------------------

@case("export-missing-weights", "none.pt", "no such checkpoint file")
def _(t, kit):
    return export_argv(t, t / "none.pt")


@case("export-truncated-weights", "trunc.pt", "not a readable PyTorch checkpoint")
def _(t, kit):
    return export_argv(t, truncated_checkpoint(t, kit))


@case("export-foreign-state-dict", "resnet.pt", "no tensor 'head.weight'")
def _(t, kit):
    return export_argv(t, foreign_state_dict(t))


@case("export-x2-checkpoint-as-x4", "x2.pt", "x2 model but x4 was asked")
def _(t, kit):
    return export_argv(t, kit.x2, extra=["--scale", "4"])


@case("export-output-exists", "m.onnx", "output exists", "--overwrite")
def _(t, kit):
    return Setup(export_argv(t, kit.x4).argv, [], [existing(t / "m.onnx")])


@case("export-suffix-does-not-match-format", "m.onnx", "writes .ort files")
def _(t, kit):
    return export_argv(t, kit.x4, extra=["--format", "ort"])


@case("export-check-images-empty-folder", "empty", "holds no images")
def _(t, kit):
    (t / "empty").mkdir()
    return export_argv(t, kit.x4, extra=["--check-images", str(t / "empty")])


# quantize --------------------------------------------------------------------------------------------------

@case("quantize-missing-weights", "none.pt", "no such checkpoint file")
def _(t, kit):
    return quantize_argv(t, t / "none.pt", kit.hr)


@case("quantize-output-exists", "int8.onnx", "output exists", "--overwrite")
def _(t, kit):
    setup = quantize_argv(t, kit.x4, kit.hr)
    return Setup(setup.argv, setup.outputs[1:], [existing(t / "int8.onnx")])


@case("quantize-missing-train", "nowhere", "no such training data")
def _(t, kit):
    return quantize_argv(t, kit.x4, t / "nowhere")


@case("quantize-foreign-hdf5", "foreign.h5", "no 'hr' dataset")
def _(t, kit):
    return quantize_argv(t, kit.x4, h5_file(t / "foreign.h5", images=(4, 32, 32, 3)))


@case("quantize-truncated-qat-checkpoint", "trunc.pt", "not a readable PyTorch checkpoint")
def _(t, kit):
    return quantize_argv(t, kit.x4, kit.hr, "qat", extra=["--val", str(kit.hr),
                                                         "--qat-checkpoint", str(truncated_checkpoint(t, kit))])


@case("quantize-checkpoint-is-not-qat", "x2.pt", "not a QAT checkpoint")
def _(t, kit):
    return quantize_argv(t, kit.x4, kit.hr, "qat", extra=["--val", str(kit.hr), "--qat-checkpoint", str(kit.x2)])


def fast_fp32_export(monkeypatch: pytest.MonkeyPatch, kit: Kit) -> None:
    """The bundled FP32 ONNX instead of a fresh export (the slow step, not the one under test)."""
    def export_onnx(model, out, *args, **kw):
        shutil.copyfile(PRETRAINED_ONNX, out)
        return Path(out)
    monkeypatch.setattr("elsr.export.quantize_onnx.export_onnx", export_onnx)


@case("quantize-missing-val-folder", "nowhere", "no such file or folder", patch=fast_fp32_export)
def _(t, kit):
    return quantize_argv(t, kit.x4, kit.hr, "qat", extra=["--val", str(t / "nowhere")])


@case("quantize-distill-weight-out-of-range", "distill weight must be in [0, 1], got 2.0")
def _(t, kit):
    return quantize_argv(t, kit.x4, kit.hr, "qat", extra=["--val", str(kit.hr), "--distill", "2"])


# bench -----------------------------------------------------------------------------------------------------

@case("bench-missing-data-folder", "nowhere", "no such folder of HR images")
def _(t, kit):
    return bench_argv(t, kit, extra=["--data", str(t / "nowhere")])


@case("bench-missing-video", "clip.mp4", "no such video")
def _(t, kit):
    return bench_argv(t, kit, extra=["--video", str(t / "clip.mp4")])


@case("bench-markdown-folder-is-a-file", "afile", "cannot write")
def _(t, kit):
    out = parent_is_a_file(t) / "BENCHMARKS.md"
    return Setup(bench_argv(t, kit, extra=["--markdown", str(out)]).argv, [out])


@case("bench-out-folder-is-a-file", "afile", "cannot write")
def _(t, kit):
    out = parent_is_a_file(t)
    return Setup(bench_argv(t, kit, extra=["--out", str(out)]).argv, [out / "results.json"])


@case("bench-empty-data-folder", "empty", "holds no images")
def _(t, kit):
    (t / "empty").mkdir()
    return bench_argv(t, kit, extra=["--data", str(t / "empty")])


# ---------------------------------------------------------------- running a case


def run_elsr(argv: list[str], capfd, in_subprocess: bool = False) -> tuple[int, str]:
    """(exit code, stderr) of ``elsr argv``."""
    if in_subprocess:
        result = subprocess.run([sys.executable, "-m", "elsr", *argv], capture_output=True, text=True,
                                timeout=300, cwd=REPO)
        return result.returncode, result.stderr
    capfd.readouterr()
    code = main(argv)
    return code, capfd.readouterr().err


def assert_refused(code: int, err: str, expect: tuple[str, ...]) -> str:
    """Exit code 2 and exactly one stderr line, the error, naming the file and the problem."""
    lines = err.strip().splitlines()
    assert code == 2, f"exit code {code}, stderr:\n{err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), f"not one error line:\n{err}"
    for phrase in expect:
        assert phrase in lines[0], f"{phrase!r} not in {lines[0]!r}"
    return lines[0]


def leftovers(*roots: Path) -> list[Path]:
    """Temporary files of interrupted atomic writes."""
    return [p for root in roots for p in root.rglob(".*.tmp")]


@pytest.mark.parametrize("bad", [
    pytest.param(c, id=c.name, marks=[pytest.mark.xfail(reason=c.xfail, strict=True)] if c.xfail else [])
    for c in CASES])
def test_bad_input_is_refused_in_one_line(bad: Case, kit: Kit, tmp_path: Path, capfd, monkeypatch):
    setup = bad.build(tmp_path, kit)
    before = {p: p.read_bytes() for p in setup.intact}
    if bad.patch:
        bad.patch(monkeypatch, kit)
    code, err = run_elsr(setup.argv, capfd, bad.subprocess)
    assert_refused(code, err, bad.expect)
    for path in setup.outputs:
        assert not path.exists(), f"{path} was written"
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path} was changed"
    assert not leftovers(tmp_path, kit.root)


def test_the_catalogue_covers_every_command():
    refused = [c for c in CASES if not c.xfail]
    commands = {c.name.split("-")[0] for c in refused}
    assert commands == {"prepare", "train", "eval", "upscale", "export", "quantize", "bench"}
    assert len(refused) >= 30


# ---------------------------------------------------------------- untrusted checkpoints


def pickle_argv(t: Path, kit: Kit, command: str, evil: Path) -> Setup:
    return {"eval": lambda: eval_argv(t, evil, kit.hr),
            "upscale": lambda: upscale_argv(t, evil, kit.hr / "img0.png"),
            "export": lambda: export_argv(t, evil),
            "quantize": lambda: quantize_argv(t, evil, kit.hr),
            "train": lambda: train_argv(t, kit, extra=["--weights", str(evil)])}[command]()


@pytest.mark.parametrize("command, zipped, in_subprocess", [
    ("eval", True, True), ("upscale", False, True), ("export", True, False), ("quantize", False, False),
    ("train", True, False)])
def test_a_pickle_that_would_run_code_is_refused_without_running_it(command, zipped, in_subprocess, kit,
                                                                    tmp_path, capfd):
    evil = evil_checkpoint(tmp_path, zipped)
    pickle.loads(pickle.dumps(RunsCode(tmp_path / "proof"))).close()  # unpickled the unsafe way, it runs code
    assert (tmp_path / "proof").exists()
    setup = pickle_argv(tmp_path, kit, command, evil)
    code, err = run_elsr(setup.argv, capfd, in_subprocess)
    assert_refused(code, err, ("evil.pt", "refused to load", "could run code"))
    assert not (tmp_path / "pwned").exists(), "the pickle ran code"
    for path in setup.outputs:
        assert not path.exists()


def test_bench_reports_a_pickle_checkpoint_as_a_failed_row_without_running_it(kit, tmp_path, capfd):
    evil = evil_checkpoint(tmp_path)
    code = main(["bench", "-q", "--weights", str(evil), "--backends", "torch-cpu", "--runs", "1", "--warmup", "0",
                 "--size", "12x12", "--threads", "1"])
    out = capfd.readouterr().out
    assert code == 0 and "refused to load" in out
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------- full disk, read-only folders


def no_space(*args, **kw):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_full_disk_keeps_the_old_file_and_leaves_no_temporary(where, kit, tmp_path, capfd, monkeypatch):
    out = existing(tmp_path / "out.png")
    monkeypatch.setattr(os, where, no_space)
    code, err = run_elsr(upscale_argv(tmp_path, kit.x4, kit.hr / "img0.png", out, ["--overwrite"]).argv, capfd)
    monkeypatch.undo()
    assert_refused(code, err, ("out.png", "No space left on device", "disk space"))
    assert out.read_text() == "old contents"
    assert not leftovers(tmp_path)


def test_full_disk_while_writing_a_checkpoint(kit, tmp_path, monkeypatch):
    """A write that fails half way (ENOSPC) inside torch.save: one clear error, the old checkpoint intact."""
    from elsr.errors import ElsrError

    path = tmp_path / "model.pt"
    save_checkpoint(path, ELSR(ModelConfig(scale=2)))
    before = path.read_bytes()
    real_save = torch.save

    class FullDisk:
        """A file that takes 100 bytes, then reports a full disk."""

        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, data):
            if self.written > 100:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.written += len(data)
            return self.handle.write(data)

        def flush(self):
            self.handle.flush()

    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **kw: real_save(obj, FullDisk(f), *a, **kw))
    with pytest.raises(ElsrError, match="model.pt: could not write file: No space left on device"):
        save_checkpoint(path, ELSR(ModelConfig(scale=4)))
    assert path.read_bytes() == before and not leftovers(tmp_path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_output_folder(kit, tmp_path, capfd):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, err = run_elsr(upscale_argv(tmp_path, kit.x4, kit.hr / "img0.png", folder / "big.png").argv, capfd)
        assert_refused(code, err, ("ro", "cannot write", "Permission denied"))
        assert not list(folder.iterdir())
    finally:
        folder.chmod(0o755)


def test_read_only_output_folder_simulated(kit, tmp_path, capfd, monkeypatch):
    """The same refusal as a real read-only folder, for runs as root (mkstemp fails with EACCES)."""
    import tempfile

    def denied(*args, **kw):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    code, err = run_elsr(eval_argv(tmp_path, kit.x4, kit.hr, ["--json", str(tmp_path / "ro" / "s.json")]).argv,
                         capfd)
    monkeypatch.undo()
    assert_refused(code, err, ("ro", "cannot write", "Permission denied"))
    assert not (tmp_path / "ro" / "s.json").exists()


# ---------------------------------------------------------------- converted where that is the obvious intent


def test_palette_png_is_converted_to_rgb_with_a_log_line(kit, tmp_path, capfd):
    from PIL import Image

    image = rgb(16, 16)
    Image.fromarray(image).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(tmp_path / "pal.png")
    assert cv2.imread(str(tmp_path / "pal.png"), cv2.IMREAD_UNCHANGED).shape == (16, 16, 3)  # OpenCV expands it
    code = main(upscale_argv(tmp_path, kit.x4, tmp_path / "pal.png").argv)  # -q: warnings still show
    err = capfd.readouterr().err
    assert code == 0, err
    assert "pal.png: palette image converted to RGB" in err and len(err.strip().splitlines()) == 1
    assert cv2.imread(str(tmp_path / "out.png")).shape == (64, 64, 3)


def test_non_image_files_in_a_folder_are_skipped_and_counted(kit, tmp_path, capfd):
    src = folder_with(tmp_path / "src", lambda d: existing(d / "README.txt"), lambda d: existing(d / "Thumbs.db"),
                      count=2, size=16)
    code = main(["upscale", "--model", str(kit.x4), "--input", str(src), "--output", str(tmp_path / "out"),
                 "--device", "cpu", "--no-progress"])
    err = capfd.readouterr().err
    assert code == 0, err
    assert "skipped 2 non-image files" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0.png", "img1.png"]


def test_odd_sizes_are_mod_cropped_for_eval(kit, tmp_path, capfd):
    src = tmp_path / "odd"
    write_png(src / "odd.png", rgb(47, 53))
    code = main(["eval", "-q", "--model", str(kit.x4), "--data", str(src), "--device", "cpu",
                 "--json", str(tmp_path / "s.json")])
    assert code == 0, capfd.readouterr().err
    import json
    assert json.loads((tmp_path / "s.json").read_text())["images"][0]["image"] == "odd.png"


def test_odd_sizes_are_mod_cropped_for_training(kit, tmp_path, capfd):
    odd = tmp_path / "odd"
    for i, (h, w) in enumerate([(37, 41), (45, 39)]):
        write_png(odd / f"odd{i}.png", rgb(h, w, seed=i))
    schedule = tiny_schedule(tmp_path / "t.yaml", epochs=(1, 1), iters=1)
    code = main(train_argv(tmp_path, kit, train=odd, val=odd, schedule=schedule).argv)
    assert code == 0, capfd.readouterr().err
    assert read_checkpoint(tmp_path / "run" / "model.pt")["arch"]["scale"] == 4


# ---------------------------------------------------------------- NaN loss, debug, console entry


def test_nan_loss_stops_with_the_last_good_checkpoint_intact(kit, tmp_path, capfd):
    huge = read_checkpoint(kit.x4)   # finite weights whose activations overflow: a diverged run's next step
    huge["model"] = {k: torch.full_like(v, 1e30) for k, v in huge["model"].items()}
    torch.save(huge, tmp_path / "huge.pt")
    schedule = schedule_with(tmp_path, lambda s: s["stages"][1].update(init=str(tmp_path / "huge.pt")))
    setup = train_argv(tmp_path, kit, schedule=schedule)
    code, err = run_elsr(setup.argv, capfd)
    assert_refused(code, err, ("run", "loss became", "lower the stage's lr"))
    run = tmp_path / "run"
    assert not (run / "model.pt").exists() and not (run / "summary.json").exists()
    assert read_checkpoint(run / "stage1_x2" / "best.pt")["arch"]["scale"] == 2
    assert read_checkpoint(run / "last.pt")["meta"]["stage"] == "x2"  # the run state: the last good epoch
    assert not (run / "stage2_x4" / "last.pt").exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("how", ["--debug", "ELSR_DEBUG=1"])
def test_debug_shows_the_traceback(how, tmp_path, monkeypatch):
    """With --debug (or ELSR_DEBUG=1) the error propagates: Python prints its traceback."""
    from elsr.errors import ElsrError

    if how == "ELSR_DEBUG=1":
        monkeypatch.setenv("ELSR_DEBUG", "1")
    with pytest.raises(ElsrError, match="nowhere.pt: no such checkpoint file"):
        main(["eval", "-q", *([how] if how.startswith("--") else []), "--model", str(tmp_path / "nowhere.pt"),
              "--data", str(tmp_path)])


def test_console_entry_truncated_png_one_line_even_from_c_libraries(kit, tmp_path):
    """A real process: nothing from libpng or OpenCV reaches stderr beside our line."""
    broken = truncated_png(tmp_path / "broken.png")
    code, err = run_elsr(upscale_argv(tmp_path, kit.x4, broken).argv, None, in_subprocess=True)
    assert_refused(code, err, ("broken.png", "truncated"))
    assert not (tmp_path / "out.png").exists() and not leftovers(tmp_path)


def test_internal_failure_is_exit_code_1(kit, tmp_path, capfd, monkeypatch):
    monkeypatch.setattr("elsr.cli.eval.evaluate", lambda cfg: 1 / 0)
    code = main(["eval", "-q", "--model", str(kit.x4), "--data", str(kit.hr)])
    err = capfd.readouterr().err.strip()
    assert code == 1 and err.startswith("elsr: internal error: ZeroDivisionError") and "--debug" in err
    assert len(err.splitlines()) == 1


# ---------------------------------------------------------------- ExecuTorch programs (.pte): data, never code


def junk_pte(path: Path) -> Path:
    """ExecuTorch's file identifier (ET12 at bytes 4..8), then noise."""
    path.write_bytes(b"\x00" * 4 + b"ET12" + np.random.default_rng(0).bytes(4000))
    return path


@pytest.fixture(scope="module")
def real_pte(kit, tmp_path_factory) -> Path:
    pytest.importorskip("executorch", reason="the executorch extra is not installed")
    from elsr.export.pte import pte_program
    from elsr.export.request import ExportRequest
    from elsr.model.checkpoint import load_model

    program, _ = pte_program(ExportRequest(load_model(kit.x4)[0]))
    path = tmp_path_factory.mktemp("pte") / "x4.pte"
    path.write_bytes(program.buffer)
    return path


@pytest.mark.parametrize("command", ["eval", "upscale"])
def test_junk_and_truncated_pte_files_are_refused_in_one_line(command, real_pte, kit, tmp_path, capfd):
    truncated = tmp_path / "cut.pte"
    truncated.write_bytes(real_pte.read_bytes()[: len(real_pte.read_bytes()) // 2])
    for path, reason in ((junk_pte(tmp_path / "junk.pte"), "ExecuTorch cannot load it"),
                         (truncated, "ExecuTorch cannot load it")):
        setup = (eval_argv if command == "eval" else lambda t, m, d: upscale_argv(t, m, d / "img0.png"))(
            tmp_path, path, kit.hr)
        code, err = run_elsr(setup.argv, capfd)
        line = assert_refused(code, err, (path.name, reason, "elsr export --format executorch"))
        assert "[program.cpp" not in line and "0x" not in line.split("cannot load it")[0]
        assert not any(p.exists() for p in setup.outputs)
    code, _ = run_elsr(eval_argv(tmp_path, real_pte, kit.hr).argv, capfd)
    assert code == 0  # the untouched program runs


def test_a_pte_without_the_extra_is_one_line_with_the_hint(kit, tmp_path, capfd, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name.split(".")[0] == "executorch" else real(name, *a, **k))
    code, err = run_elsr(eval_argv(tmp_path, junk_pte(tmp_path / "junk.pte"), kit.hr).argv, capfd)
    assert_refused(code, err, ("'executorch'", "pip install 'elsr[executorch]'"))

