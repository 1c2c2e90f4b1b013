"""The ARM64 check without emulation: its judgement, its SME self-check, its runner, its refusals.

The emulated run itself (root, QEMU, minutes) is opt-in: ``python -m elsr.benchmarks.arm64``, figures
in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from elsr.benchmarks.arm64 import environment, run_jobs, smecheck
from elsr.benchmarks.arm64.artifacts import ARTIFACTS, artifacts_named
from elsr.benchmarks.arm64.compare import (FAIL, PASS, REPORTED, UNTRUSTED, Result, agreement, judge, pooled_psnr_y,
                                           summary)
from elsr.benchmarks.arm64.report import agreement_table
from elsr.benchmarks.arm64.sandbox import cpuinfo_text
from elsr.benchmarks.arm64.targets import CORES, RUNTIMES, core_named, runtime_named
from elsr.cli.arm64 import main
from elsr.errors import ElsrError
from elsr.model.inference import image_to_array
from elsr.pretrained import MODELS
from elsr.runtime.loaders import load_upscaler

PIXELS = 1 / 255


def uint8_outputs(seed: int = 0, count: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8) for _ in range(count)]


def dequantize(y: np.ndarray) -> np.ndarray:
    return y.astype(np.float32) * np.float32(PIXELS)


def judged(outputs: list[np.ndarray], reference: list[np.ndarray], precision: str, runtime: str, core: str,
           to_float=dequantize, emulator_ok: bool = True) -> Result:
    found = agreement(outputs, reference, to_float)
    result = Result("model.tflite", runtime, precision, core, identical=found.identical, max_diff=found.max_diff)
    checked = runtime_named(runtime).phone_default and core_named(core).phone
    return judge(result, checked, emulator_ok)


def test_identical_int8_outputs_pass():
    x86 = uint8_outputs()
    result = judged([y.copy() for y in x86], x86, "int8", "litert-xnnpack", "cortex-a53")
    assert (result.identical, result.max_diff, result.verdict, result.checked) == (1.0, 0.0, PASS, True)
    assert summary([result])[0]


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert-xnnpack"])
def test_one_grey_level_of_int8_on_a_default_runtime_fails(runtime):
    x86 = uint8_outputs()
    arm = [y.copy() for y in x86]
    arm[1][0, 5, 7, 2] ^= 1                      # one value, one grey level
    result = judged(arm, x86, "int8", runtime, "cortex-a76")
    assert result.verdict == FAIL and result.max_diff == pytest.approx(1.0) and result.identical < 1.0
    passed, line = summary([result])
    assert not passed and line.startswith("ARM64 check FAILED") and "cortex-a76" in line


def test_int8_difference_on_float_outputs_counts_in_grey_levels():
    x86 = [dequantize(y) for y in uint8_outputs()]   # an INT8 model with float I/O: outputs k/255
    arm = [y.copy() for y in x86]
    arm[0][0, 0, 0, 0] += np.float32(PIXELS)
    result = judged(arm, x86, "int8", "onnxruntime", "cortex-a53", to_float=lambda y: y)
    assert result.verdict == FAIL and result.max_diff == pytest.approx(1.0, abs=1e-4)


def test_fp32_within_tolerance_passes_and_beyond_fails():
    x86 = [np.random.default_rng(1).random((1, 3, 8, 8), dtype=np.float32)]
    close = [x86[0] + np.float32(8e-7)]                # what onnxruntime's FP32 kernels differ by on ARM
    far = [x86[0] + np.float32(0.5 / 255)]
    assert judged(close, x86, "fp32", "onnxruntime", "cortex-a55", to_float=lambda y: y).verdict == PASS
    assert judged(far, x86, "fp32", "onnxruntime", "cortex-a55", to_float=lambda y: y).verdict == FAIL


def test_builtin_kernel_differences_are_reported_not_failed():
    x86 = uint8_outputs()
    builtin = [np.clip(y.astype(int) + 6, 0, 255).astype(np.uint8) for y in x86]
    reported = judged(builtin, x86, "int8", "litert-builtin", "cortex-a53")
    assert reported.verdict == REPORTED and not reported.checked and reported.max_diff == 6
    ok = judged([y.copy() for y in x86], x86, "int8", "litert-xnnpack", "cortex-a53")
    passed, line = summary([ok, reported])
    assert passed and "1 rows reported only (max 6 levels)" in line


def test_a_server_core_is_reported_and_an_emulator_bug_is_not_judged():
    x86 = uint8_outputs()
    garbage = [255 - y for y in x86]
    assert judged(garbage, x86, "int8", "onnxruntime", "neoverse-n1").verdict == REPORTED
    untrusted = judged(garbage, x86, "int8", "litert-xnnpack", "max", emulator_ok=False)
    ok = judged([y.copy() for y in x86], x86, "int8", "litert-xnnpack", "cortex-a53")
    assert untrusted.verdict == UNTRUSTED and not untrusted.checked
    passed, line = summary([ok, untrusted])
    assert passed and "not judged on max" in line


def test_a_run_that_judged_nothing_fails():
    x86 = uint8_outputs()
    reported = judged([y.copy() for y in x86], x86, "int8", "litert-builtin", "cortex-a53")
    passed, line = summary([reported])
    assert not passed and "nothing was judged" in line


def test_a_crashed_run_on_a_judged_row_fails():
    result = judge(Result("m.ort", "onnxruntime", "int8", "cortex-a53", error="the process died (signal 11)"), True)
    assert result.verdict == FAIL and "signal 11" in summary([result])[1]


def test_mismatched_output_sets_are_an_error_not_a_pass():
    with pytest.raises(ValueError):
        agreement(uint8_outputs(count=2), uint8_outputs(count=3), dequantize)
    with pytest.raises(ValueError):
        agreement([np.zeros((1, 4, 4, 3), np.uint8)], [np.zeros((1, 4, 4, 3), np.float32)], dequantize)


def test_pooled_psnr():
    hr = np.random.default_rng(2).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    assert pooled_psnr_y([hr], [hr], 4) == float("inf")
    assert 30 < pooled_psnr_y([np.clip(hr.astype(int) + 3, 0, 255).astype(np.uint8)], [hr], 4) < 60


def test_tables_name_every_artifact_runtime_and_core():
    assert {r for a in ARTIFACTS for r in a.runtimes} <= {r.name for r in RUNTIMES}
    assert {a.precision for a in ARTIFACTS} == {"fp32", "int8"} and len({a.file for a in ARTIFACTS}) == len(ARTIFACTS)
    assert {"cortex-a53", "cortex-a76", "neoverse-n1", "max", "max,sme=off"} <= {c.name for c in CORES}
    with pytest.raises(ElsrError, match="no artifact"):
        artifacts_named(["elsr_x4.pte"])
    x86 = uint8_outputs(count=1)
    records = [judged(x86, x86, "int8", "litert-xnnpack", c.name).record() for c in CORES]
    for record in records:
        record["artifact"] = "elsr_x4_int8.tflite"
    table = agreement_table({"cores": [c.name for c in CORES], "records": records})
    assert "neoverse-n1 (reported)" in table and table.count("100% / 0") == len(CORES)


# ------------------------------------------------------------------------------------- SME self-check


def qemu72_smopa(svl: int) -> np.ndarray:
    """What QEMU 7.2 computes for the program's two SMOPAs (target/arm/sme_helper.c: do_imopa, the 64-bit tiles'
    loop): 64-bit row r of a 32-bit tile lands on ZA row tile + 8r, and each 64-bit chunk of it is two element-wise
    4-byte dot products of 64-bit chunks of the two vectors, instead of the outer product."""
    a, b, c = (v.astype(np.int64) for v in smecheck.vectors())
    n = svl // 4
    za = np.zeros((svl, n), np.int64)
    for tile, (zn, zm) in ((1, (a, b)), (3, (b, a))):
        for row in range(n // 2):
            for col in range(n // 2):
                for half in range(2):
                    start_n, start_m = 8 * row + 4 * half, 8 * col + 4 * half
                    za[tile + 8 * row, 2 * col + half] += zn[start_n:start_n + 4] @ zm[start_m:start_m + 4]
    za[2::4] += c[:n][None, :]
    return ((za + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)


def test_sme_selfcheck_judges_outputs():
    for svl in (16, 32, 64):
        right = smecheck.expected(svl)
        assert smecheck.judge_output(0, svl.to_bytes(8, "little") + right.tobytes())[0] == smecheck.OK
        status, detail = smecheck.judge_output(0, svl.to_bytes(8, "little") + qemu72_smopa(svl).tobytes())
        assert status == smecheck.WRONG and f"{3 * svl * svl // 32} of" in detail   # 3/4 of two tiles
    assert smecheck.judge_output(-4, b"")[0] == smecheck.NO_SME
    assert smecheck.judge_output(1, b"")[0] == smecheck.WRONG


def test_sme_selfcheck_program_is_a_static_aarch64_executable():
    elf = smecheck.program()
    machine, = struct.unpack_from("<H", elf, 18)
    entry, = struct.unpack_from("<Q", elf, 24)
    assert elf[:4] == b"\x7fELF" and machine == 0xB7 and entry == smecheck.BASE + smecheck.CODE_AT
    assert environment.is_static_elf(elf) and not environment.is_static_elf(open(sys.executable, "rb").read(4096 * 4))
    code = elf[smecheck.CODE_AT:smecheck.CODE_AT + 4 * len(smecheck.CODE)]
    assert struct.unpack(f"<{len(smecheck.CODE)}I", code) == smecheck.CODE
    assert elf[smecheck.CODE_AT + smecheck.VEC_A:][:256] == smecheck.vectors()[0].tobytes()


# ------------------------------------------------------------------------------------------ the runner


def test_runner_script_gives_elsr_runtime_outputs(tmp_path):
    """The self-contained runner (numpy + the runtimes only) run on x86 gives what elsr.runtime gives."""
    from elsr.benchmarks.arm64 import RUNNER

    assert "elsr" not in {n.split(".")[0] for n in _imports(RUNNER.read_text())}
    lr = np.random.default_rng(3).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    upscaler = load_upscaler(MODELS["x4-int8-ort"], device="cpu")
    prepared = upscaler.prepare(image_to_array(lr))
    np.save(tmp_path / "in.npy", prepared)
    spec = {"threads": 1, "jobs": [
        {"id": "ok", "model": str(MODELS["x4-int8-ort"]), "runtime": "onnxruntime",
         "inputs": [str(tmp_path / "in.npy")], "outputs": [str(tmp_path / "out" / "y.npy")]},
        {"id": "bad", "model": str(tmp_path / "missing.onnx"), "runtime": "onnxruntime",
         "inputs": [str(tmp_path / "in.npy")], "outputs": [str(tmp_path / "out" / "z.npy")]}]}
    (tmp_path / "jobs.json").write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, str(RUNNER), str(tmp_path / "jobs.json")], capture_output=True, text=True,
                          check=True)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["job"] for line in lines] == ["ok", "ok", "bad", "bad"]
    assert "seconds" in lines[1] and "error" in lines[3]
    assert np.array_equal(np.load(tmp_path / "out" / "y.npy"), upscaler.forward(prepared))


def _imports(source: str) -> set[str]:
    import ast

    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module or "")
    return found


class CrashingRunner:
    """Replays runner outputs: the first process crashes (SIGSEGV) inside the second job."""

    def __init__(self):
        self.calls = []

    def __call__(self, spec):
        jobs = [job["id"] for job in json.loads(spec.read_text())["jobs"]]
        self.calls.append(jobs)
        if len(self.calls) == 1:
            out = [{"job": "a", "started": True}, {"job": "a", "seconds": 1.0}, {"job": "b", "started": True}]
            return subprocess.CompletedProcess([], -11, "\n".join(map(json.dumps, out)), "Segmentation fault")
        out = [m for job in jobs for m in ({"job": job, "started": True}, {"job": job, "seconds": 2.0})]
        return subprocess.CompletedProcess([], 0, "\n".join(map(json.dumps, out)), "")


def test_a_crash_ends_only_the_job_it_was_in(tmp_path):
    launch = CrashingRunner()
    outcome = run_jobs(launch, tmp_path, "cortex-a53", [{"id": job} for job in "abc"], 1)
    assert launch.calls == [["a", "b", "c"], ["c"]]
    assert outcome["a"] == (1.0, None) and outcome["c"] == (2.0, None)
    assert outcome["b"][0] is None and "signal 11" in outcome["b"][1]


def test_a_runner_that_cannot_start_fails_every_job(tmp_path):
    def launch(spec):
        return subprocess.CompletedProcess([], 1, "", "ImportError: libstdc++.so.6: cannot open shared object file")

    outcome = run_jobs(launch, tmp_path, "max", [{"id": "a"}, {"id": "b"}], 1)
    assert all(seconds is None and "libstdc++" in error for seconds, error in outcome.values()) and len(outcome) == 2


# ----------------------------------------------------------------------------------- machine and CLI


def test_debian_mirror_is_read_from_the_apt_sources(tmp_path):
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
                       "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
                       "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n")
    mirror = environment.debian_mirror(sources)
    assert (mirror.uri, mirror.codename) == ("http://mirror.example/debian", "bookworm")
    sources.write_text("Types: deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm\n")
    with pytest.raises(ElsrError, match="no Debian release"):
        environment.debian_mirror(sources)


def test_cpuinfo_for_old_qemu_names_the_emulated_core():
    assert "CPU part\t: 0xd03" in cpuinfo_text("cortex-a53") and "CPU part\t: 0x051" in cpuinfo_text("max,sme=off")


def test_refuses_without_root_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(environment.os, "geteuid", lambda: 1000)
    assert main(["--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("elsr: error: the ARM64 check needs root") and "sudo" in err
    assert not (tmp_path / "cache").exists()


def test_refuses_without_binfmt_misc_in_one_line(monkeypatch, capsys, tmp_path):
    filesystems = tmp_path / "filesystems"
    filesystems.write_text("nodev\tsysfs\nnodev\tproc\n\text4\n")
    monkeypatch.setattr(environment.os, "geteuid", lambda: 0)
    monkeypatch.setattr(environment, "FILESYSTEMS", filesystems)
    assert main(["--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no binfmt_misc" in err and "modprobe binfmt_misc" in err


def test_refuses_an_old_kernel_and_a_colon_in_the_cache_path(monkeypatch, capsys, tmp_path):
    filesystems = tmp_path / "filesystems"
    filesystems.write_text("nodev\tbinfmt_misc\n")
    monkeypatch.setattr(environment.os, "geteuid", lambda: 0)
    monkeypatch.setattr(environment, "FILESYSTEMS", filesystems)
    monkeypatch.setattr(environment.os, "uname", lambda: type("U", (), {"release": "6.1.0-18-amd64"})())
    assert main(["--cache", str(tmp_path / "cache")]) == 2
    assert "Linux 6.1.0-18-amd64 cannot give a user namespace its own binfmt_misc" in capsys.readouterr().err
    assert main(["--cache", str(tmp_path / "a:b")]) == 2
    assert "may not contain ':'" in capsys.readouterr().err
