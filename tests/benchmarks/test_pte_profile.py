"""``python -m elsr.benchmarks.pte_profile``: an ExecuTorch program's time, operator by operator (ETDump)."""

from __future__ import annotations

import pytest
import torch

from elsr.model.network import ELSR, ModelConfig

pytest.importorskip("executorch", reason="the executorch extra is not installed (pip install 'elsr[executorch]')")

from elsr.benchmarks.pte_profile import PteProfileConfig, profile_markdown, profile_program  # noqa: E402
from elsr.cli.pte_profile import main  # noqa: E402
from elsr.export.pte import pte_program  # noqa: E402
from elsr.export.request import ExportRequest  # noqa: E402


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("profile") / "fp32.pte"
    path.write_bytes(pte_program(ExportRequest(ELSR(ModelConfig(scale=4)).eval()))[0].buffer)
    return path


def test_profile_names_each_xnnpack_operator_and_adds_up(program):
    profile = profile_program(PteProfileConfig(program, threads=0, runs=3, warmup=1, size=(24, 32)))
    names = [event.name for event in profile.events if event.in_xnnpack]
    assert sum(name.startswith("Convolution (NHWC, F32)") for name in names) == 3 + 4   # the tail: one per sub-row
    assert any(name.startswith("PReLU") for name in names) and any(name.startswith("Copy") for name in names)
    assert profile.size == (24, 32) and profile.partitions == 1   # every operator in XNNPACK
    assert profile.between_ms >= 0 and profile.outside_ms >= 0
    assert all(0 <= event.median_ms < profile.method_ms for event in profile.events)
    table = profile_markdown(profile)
    assert "one 24x32 frame" in table and "| XNNPACK | Convolution (NHWC, F32) IGEMM #1 |" in table
    assert "**the forward call**" in table


def test_command_prints_and_writes_its_section(program, tmp_path, capsys):
    report = tmp_path / "BENCH.md"
    report.write_text("# Benchmarks\n\nkept\n")
    assert main([str(program), "--threads", "0", "--runs", "2", "--size", "16x20", "--markdown", str(report)]) == 0
    out = capsys.readouterr().out
    assert "one 16x20 frame" in out
    text = report.read_text()
    assert "kept" in text and "## ExecuTorch profile" in text and "python -m elsr.benchmarks.pte_profile" in text


def test_a_missing_program_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "none.pte")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such model file" in err[0]
