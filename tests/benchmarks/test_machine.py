"""Machine description, the nominal peak, and the peak-RSS probe."""

import numpy as np
import pytest

from elsr.benchmarks.machine import Machine, peak_rss_bytes, reset_peak_rss


def test_detect():
    machine = Machine.detect()
    assert machine.cpu and machine.usable_cores >= 1 and machine.fp32_macs_per_cycle >= 2
    line = machine.line()
    assert "onnxruntime" in line and "torch" in line and "cores" in line
    assert "estimate" in machine.peak_note()


def test_peak_scales_with_threads_and_int8():
    machine = Machine("cpu", 4, 4, 2.0, "test", "avx2", 16, True, "os", "3", "t", "o", None, "today")
    assert machine.peak_gmacs(1, "fp32") == pytest.approx(32.0)
    assert machine.peak_gmacs(2, "fp32") == pytest.approx(64.0)
    assert machine.peak_gmacs(8, "fp32") == pytest.approx(128.0)  # capped at the usable cores
    assert machine.peak_gmacs(1, "int8 qat") == pytest.approx(128.0)  # VNNI: x4
    assert machine.peak_gmacs(None, "fp32") is None  # GPU rows
    no_vnni = Machine("cpu", 4, 4, 2.0, "test", "avx2", 16, False, "os", "3", "t", "o", None, "today")
    assert no_vnni.peak_gmacs(1, "int8") == pytest.approx(32.0)


def test_peak_rss_sees_a_large_allocation():
    reset_peak_rss()
    before = peak_rss_bytes()
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
    assert peak_rss_bytes() >= before + 48 * 1024 * 1024
    del block
