"""``elsr export --format executorch``: .pte programs run in ExecuTorch's own runtime (XNNPACK), FP32 within 1e-4 of
PyTorch, INT8 carrying our QAT integers (the same integer model as the INT8 ONNX), int8 pixel I/O, dynamic sizes up
to the bound and tiles beyond it, the delegation report, one thread count per process, the benchmark rows."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from elsr.cli.main import main
from elsr.errors import ElsrError
from elsr.export.onnx_int8 import build_int8_model, save_model
from elsr.io.kinds import file_kind
from elsr.model.checkpoint import save_checkpoint
from elsr.model.inference import super_resolve
from elsr.model.network import ELSR, ModelConfig, dcr_order
from elsr.quant.checkpoint import save_qat_checkpoint
from elsr.quant.fake_quant import QuantELSR
from elsr.quant.params import quant_params
from elsr.runtime.contract import COPIES_KEY, model_metadata
from elsr.runtime.loaders import load_upscaler
from tests.helpers import image_folder, observe_ranges, smooth_image

pytest.importorskip("executorch", reason="the executorch extra is not installed (pip install 'elsr[executorch]')")

from elsr.export import pte  # noqa: E402
from elsr.export.request import ExportRequest  # noqa: E402
from elsr.runtime import pte_model  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A trained-looking x4 model, its QAT checkpoint and INT8 ONNX, and the four programs exported by the CLI."""
    root = tmp_path_factory.mktemp("pte")
    torch.manual_seed(0)
    model = ELSR(ModelConfig(scale=4)).eval()
    with torch.no_grad():
        model.body_act.weight.fill_(0.2)
    save_checkpoint(root / "model.pt", model)
    qmodel = observe_ranges(QuantELSR(model))   # --no-split: one copy
    save_qat_checkpoint(root / "model.qat.pt", qmodel, [])
    save_model(build_int8_model(quant_params(qmodel), {**model_metadata(model, "int8"), "quantization": "qat; qdq"}),
               root / "int8.onnx")
    split = observe_ranges(QuantELSR(model, split=True))   # the default of new QAT: two copies on the skip path
    save_model(build_int8_model(quant_params(split), {**model_metadata(model, "int8"), "quantization": "qat; qdq"}),
               root / "int8_split.onnx")
    rng = np.random.default_rng(0)
    images = image_folder(root / "images", rng, 2, (24, 32))
    for name, extra in (("fp32", []), ("int8", ["--int8", "--qat-checkpoint", str(root / "model.qat.pt")]),
                        ("int8_int8io", ["--int8", "--qat-checkpoint", str(root / "int8.onnx"), "--int8-io"]),
                        ("int8_split", ["--int8", "--qat-checkpoint", str(root / "int8_split.onnx")]),
                        ("fp32_fixed", ["--fixed-shape", "1x3x24x32"])):
        assert main(["export", "--weights", str(root / "model.pt"), "--format", "executorch", "--out",
                     str(root / f"{name}.pte"), "--check-images", str(images), *extra]) == 0
    return {"root": root, "model": model, "qmodel": qmodel, "split": split, "images": images}


def exported(files, capsys, name: str, *extra: str) -> str:
    out = files["root"] / f"again_{name}.pte"
    assert main(["export", "--weights", str(files["root"] / "model.pt"), "--format", "executorch", "--out", str(out),
                 "--overwrite", *extra]) == 0
    return capsys.readouterr().out


def test_fp32_program_matches_pytorch_and_knows_itself(files):
    path = files["root"] / "fp32.pte"
    assert file_kind(path) == "pte"
    upscaler = load_upscaler(path)
    assert upscaler.scale == 4 and upscaler.max_size == pte.MAX_LR and upscaler.fixed_size is None
    info = upscaler.info()
    assert info.precision == "fp32, float32 I/O" and info.params == 3469 and info.config == ModelConfig(scale=4)
    model = files["model"]
    for shape in ((1, 3, 9, 9), (2, 3, 31, 17), (1, 3, 180, 320)):   # any size up to the bound, any batch
        x = np.random.default_rng(1).random(shape, dtype=np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert np.abs(upscaler.run_array(x) - ref).max() < 1e-4


def test_export_log_shows_what_xnnpack_runs(files, capsys):
    out = exported(files, capsys, "log")
    assert ("ExecuTorch XNNPACK: 12/12 operators delegated in 1 partition (permute_copy, convolution x7, prelu, add, "
            "cat, _to_dim_order_copy); every operator delegated") in out
    assert "outside XNNPACK" not in out
    assert "ExecuTorch contract: input lr NHWC [1xHxWx3], H <= 540, W <= 960, float32 RGB in [0, 1]" in out
    assert "output sr [1x12xHx4W] in channels-last memory: the bytes of the NHWC image [1x4Hx4Wx3]" in out
    assert "parity random 1x3x180x320: max abs error" in out


def test_program_tensors_are_nhwc_and_its_shuffle_is_pixel_shuffle(files):
    """Input [1, H, W, 3]; output [1, 12, H, 4W] in channels-last memory, the bytes of the NHWC image. In eager
    PyTorch the program's graph (the tail as one conv per sub-row, concatenated along the width) gives
    PixelShuffle's pixels: each value is the same dot product, computed by a conv with fewer output channels (to
    float rounding: 1e-6); in ExecuTorch, the raw output's memory is the network's output image."""
    model = files["model"]
    x = torch.rand(1, 3, 11, 13, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        reference = model(x).permute(0, 2, 3, 1)
        graph = pte.Fp32Program(model, "float")(x.permute(0, 2, 3, 1).contiguous())
    assert tuple(graph.shape) == (1, 12, 11, 52) and graph.is_contiguous(memory_format=torch.channels_last)
    assert (graph.permute(0, 2, 3, 1).reshape(1, 44, 52, 3) - reference).abs().max() < 1e-6
    program = load_upscaler(files["root"] / "fp32.pte").model
    assert program.layout == "NHWC" and program.input_sizes == (1, *pte.MAX_LR, 3)
    raw = program.run(x.permute(0, 2, 3, 1).contiguous()).numpy()
    assert raw.shape == (1, 12, 11, 52)
    assert np.abs(pte_model.nhwc_image(raw) - reference.numpy()).max() < 1e-5


def test_int8_delegation_keeps_every_operator_integer_in_xnnpack(files):
    from elsr.export.onnx_int8 import load_int8_source

    qmodel, params, _ = load_int8_source(files["root"] / "int8.onnx")
    for io in ("float", "int8"):
        _, report = pte.pte_program(ExportRequest(files["model"], qmodel=qmodel, params=params, io=io))
        assert len(report.partitions) == 1 and not report.outside
        ops = report.partitions[0]
        assert ops.count("convolution") == 3 + 4 and ops.count("cat") == 1   # the tail: one conv per sub-row
        assert "leaky_relu" in ops and "add" in ops and ops.count("dequantize_per_channel") == 7
        quantized = ops.count("quantize_per_tensor")   # every int8 op's output: convs, activation, add, permute,
        assert quantized == 12 + (io == "float")       # cat, memory order; the float input's quantize


def test_fixed_shape_puts_every_operator_in_one_partition(files):
    for qmodel in (None, files["split"]):
        _, report = pte.pte_program(ExportRequest(files["model"], qmodel=qmodel, fixed_shape=(1, 3, 24, 32)))
        assert len(report.partitions) == 1 and not report.outside
        assert report.lines()[0].endswith("every operator delegated")
    upscaler = load_upscaler(files["root"] / "fp32_fixed.pte")
    assert upscaler.fixed_size == (24, 32)
    lr = smooth_image(np.random.default_rng(2), 40, 50)    # larger than the fixed shape: in windows
    assert np.abs(upscaler(lr).astype(int) - super_resolve(files["model"], lr).astype(int)).max() <= 1


@pytest.mark.parametrize("name, reference, onnx_file, copies", [("int8", "qmodel", "int8.onnx", 1),
                                                                  ("int8_split", "split", "int8_split.onnx", 2)])
def test_int8_program_is_the_qat_integer_model(files, name, reference, onnx_file, copies):
    """Against the fake-quant model and the INT8 ONNX from the same QAT parameters, with one copy of the skip path
    (--no-split) and with two (split, the default): XNNPACK's int8 LeakyRelu (8-bit multipliers) leaves some
    pixels a level or two away, never more than a few."""
    x = np.round(np.random.default_rng(3).random((1, 3, 40, 48), dtype=np.float32) * 255) / 255
    with torch.no_grad():
        qat = files[reference](torch.from_numpy(x)).numpy()
    upscaler = load_upscaler(files["root"] / f"{name}.pte")
    program = upscaler.run_array(x)
    onnx_int8 = load_upscaler(files["root"] / onnx_file).run_array(x)
    for ref in (qat, onnx_int8):
        levels = np.abs(program - ref) * 255
        assert levels.max() <= 4 and (levels < 1e-3).mean() > 0.5 and (levels <= 1 + 1e-3).mean() > 0.95
    assert np.allclose(program * 255, np.round(program * 255), atol=1e-3)   # outputs on the pixel grid
    assert upscaler.info().precision == "int8 qat, float32 I/O"
    assert upscaler.model.metadata[COPIES_KEY] == str(copies)


def test_split_program_holds_two_copies_of_the_skip_path(files):
    """The program's int8 weights are the integer graph's (integer_convs): head and body_conv2 with twice the
    output channels, body_conv1 and tail with twice the input channels; the tail as one conv per sub-row."""
    params = quant_params(files["split"])
    module = pte.program_module(ExportRequest(files["model"], qmodel=files["split"], params=params))
    c = files["model"].config.channels
    assert tuple(module.head_w.shape) == (2 * c, 3, 3, 3) and tuple(module.body_conv2_w.shape) == (2 * c, c, 3, 3)
    assert tuple(module.body_conv1_w.shape) == (c, 2 * c, 3, 3) and tuple(module.tail0_w.shape) == (12, 2 * c, 3, 3)
    for name, conv in params.integer_convs().items():
        if name == "tail":   # one conv per sub-row, its channels in DCR order
            tail = np.concatenate([getattr(module, f"tail{i}_w").numpy() for i in range(4)])
            assert np.array_equal(tail, conv.weight[dcr_order(4)])
        else:
            assert np.array_equal(getattr(module, f"{name}_w").numpy(), conv.weight)


def test_int8_io_takes_and_gives_bytes_minus_128(files):
    path = files["root"] / "int8_int8io.pte"
    upscaler = load_upscaler(path)
    assert upscaler.model.input_dtype == np.int8 and upscaler.model.output_dtype == np.int8
    lr = smooth_image(np.random.default_rng(4), 30, 26)
    float_io = load_upscaler(files["root"] / "int8.pte")
    assert np.array_equal(upscaler(lr), float_io(lr))   # the same integers, no float step
    raw = upscaler.forward(upscaler.prepare(lr.transpose(2, 0, 1)[None].astype(np.float32) / 255))
    assert raw.dtype == torch.int8


def test_images_beyond_the_bound_run_in_tiles_exactly(files, tmp_path, monkeypatch):
    monkeypatch.setattr(pte, "MAX_LR", (24, 32))
    program, _ = pte.pte_program(ExportRequest(files["model"]))
    path = tmp_path / "small_bound.pte"
    path.write_bytes(program.buffer)
    upscaler = load_upscaler(path)
    assert upscaler.max_size == (24, 32)
    lr = smooth_image(np.random.default_rng(5), 45, 70)
    assert np.abs(upscaler(lr).astype(int) - super_resolve(files["model"], lr).astype(int)).max() <= 1


def test_a_foreign_nchw_program_runs_as_nchw(files, tmp_path):
    """A program without our metadata (here the plain network, NCHW, nn.PixelShuffle) is read by its input's
    shape: NCHW, fixed."""
    exir = pte.import_executorch("executorch.exir")
    partitioner = pte.import_executorch("executorch.backends.xnnpack.partition.xnnpack_partitioner")
    with torch.no_grad():
        exported = torch.export.export(files["model"], (torch.zeros(1, 3, 20, 24),))
    program = exir.to_edge_transform_and_lower(exported, partitioner=[partitioner.XnnpackPartitioner()])
    path = tmp_path / "foreign.pte"
    path.write_bytes(program.to_executorch().buffer)
    upscaler = load_upscaler(path)
    assert upscaler.model.layout == "NCHW" and upscaler.fixed_size == (20, 24) and upscaler.scale == 4
    lr = smooth_image(np.random.default_rng(7), 20, 24)
    assert np.abs(upscaler(lr).astype(int) - super_resolve(files["model"], lr).astype(int)).max() <= 1


def test_a_program_whose_metadata_lies_about_its_layout_is_refused(files, tmp_path):
    """NHWC input and metadata saying NHWC, but an NCHW image out: one line naming the file, not a traceback."""
    class NhwcInNchwOut(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x.permute(0, 3, 1, 2))

    exir = pte.import_executorch("executorch.exir")
    meta = torch.tensor(list(b'{"layout": "NHWC", "scale": "4"}'), dtype=torch.uint8)
    with torch.no_grad():
        exported = torch.export.export(NhwcInNchwOut(files["model"]), (torch.zeros(1, 20, 24, 3),))
    program = exir.to_edge(exported, constant_methods={"elsr_metadata": meta})
    path = tmp_path / "liar.pte"
    path.write_bytes(program.to_executorch().buffer)
    with pytest.raises(ElsrError, match=r"liar.pte: its metadata says NHWC but its output has shape \[1, 3, 80, 96\], "
                                        r"not the \[N, 3s, H, sW\] of one for input \[1, 20, 24, 3\]"):
        load_upscaler(path)


def test_one_thread_count_per_process(files):
    upscaler = load_upscaler(files["root"] / "fp32.pte")
    current = pte_model.thread_count()
    assert pte_model.set_threads(0) == current and pte_model.set_threads(current) == current
    with pytest.raises(ElsrError, match="cannot change that once a program is loaded"):
        load_upscaler(files["root"] / "fp32.pte", threads=current + 1)
    upscaler.close()


def test_pixel_io_other_than_int8_is_refused(files, tmp_path, capsys):
    assert main(["export", "--weights", str(files["root"] / "model.pt"), "--format", "executorch", "--uint8-io",
                 "--out", str(tmp_path / "u.pte")]) == 2
    err = capsys.readouterr().err
    assert "--format executorch cannot have uint8 tensors" in err and "takes --io float or int8" in err
    assert not (tmp_path / "u.pte").exists()


def test_upscale_a_folder_with_a_program(files, tmp_path):
    out = tmp_path / "out"
    assert main(["upscale", "-q", "--model", str(files["root"] / "int8_int8io.pte"), "--input",
                 str(files["images"]), "--output", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img1.png"]


def test_benchmark_rows_run_each_thread_count_in_its_own_process(files):
    """Both programs of a thread count share its process and are timed in turns there."""
    from elsr.benchmarks.bench import run_benchmark
    from elsr.benchmarks.config import BenchConfig

    result = run_benchmark(BenchConfig(models=[files["root"] / "fp32.pte", files["root"] / "int8.pte"],
                                       size=(24, 32), runs=7, warmup=1, threads=[1, 2], backends=["executorch"]))
    rows = [r for r in result.rows if r.backend == "executorch"]
    assert [(r.name.split(":")[1], r.threads, r.status) for r in rows] == [
        ("fp32.pte", 1, "ok"), ("fp32.pte", 2, "ok"), ("int8.pte", 1, "ok"), ("int8.pte", 2, "ok")], rows
    assert [r.precision for r in rows] == ["fp32, float32 I/O"] * 2 + ["int8 qat, float32 I/O"] * 2
    assert all(r.median_ms and r.runs == 7 and r.peak_rss_bytes for r in rows)


def test_without_the_extra_the_format_is_a_one_line_hint(files, tmp_path, capsys, monkeypatch):
    from elsr.benchmarks.backends import no_executorch

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name.split(".")[0] == "executorch" else real(name, *a, **k))
    assert main(["export", "--weights", str(files["root"] / "model.pt"), "--format", "executorch", "--out",
                 str(tmp_path / "m.pte")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'elsr[executorch]'" in err[0]
    assert no_executorch() == "no ExecuTorch runtime (pip install 'elsr[executorch]')"
