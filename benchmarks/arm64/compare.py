"""The ARM64 check's judgement: outputs on an emulated core against the same artifact's outputs on x86.

Pure functions over arrays, so that tests can hand them two output sets and read the verdict. Per
(artifact, runtime, core): the share of output values equal to x86's, the largest difference in
grey levels, and PSNR-Y on the whole image set against ground truth and against the FP32 model, each
beside x86's. The rule:

- INT8 through a runtime an app gets by default (onnxruntime's CPU EP, LiteRT with XNNPACK) on a
  core phones ship must give x86's output exactly: one grey level anywhere fails the check;
- FP32 there must stay within ``FP32_TOLERANCE`` grey levels (float kernels may sum in another order);
- everything else (LiteRT's builtin kernels, a server core) is reported, not judged;
- a core whose emulation failed the SME self-check (``smecheck``) is not judged either: its outputs
  say nothing about a phone;
- a run that checked nothing fails too, so that the check cannot pass by selecting nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from elsr.data.metrics import rgb_to_y

FP32_TOLERANCE = 0.01          # grey levels (out of 255) an FP32 output may differ from x86's by
PASS, FAIL, REPORTED, UNTRUSTED = "pass", "FAIL", "reported", "emulator bug"


@dataclass
class Agreement:
    identical: float           # share of output values equal to x86's, 0..1
    max_diff: float            # largest difference, grey levels


def agreement(arm: Sequence[np.ndarray], x86: Sequence[np.ndarray],
              to_float: Callable[[np.ndarray], np.ndarray]) -> Agreement:
    """Raw outputs of one artifact on ARM and on x86 (same images, same order). ``to_float`` turns a raw
    output into floats in [0, 1] (dequantizing uint8 outputs), for the difference in grey levels."""
    if len(arm) != len(x86) or not arm:
        raise ValueError(f"{len(arm)} ARM outputs against {len(x86)} x86 outputs")
    same = total = 0
    worst = 0.0
    for a, b in zip(arm, x86):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(f"output {a.shape} {a.dtype} against x86's {b.shape} {b.dtype}")
        same += int(np.count_nonzero(a == b))
        total += a.size
        diff = float((np.abs(to_float(a).astype(np.float64) - to_float(b).astype(np.float64))).max()) * 255.0
        # integer outputs differ by whole steps: drop the float32 rounding of their scale (6.0000148 -> 6.0)
        worst = max(worst, round(diff, 4) if a.dtype.kind in "iu" else diff)
    return Agreement(same / total, worst)


def pooled_psnr_y(images: Sequence[np.ndarray], refs: Sequence[np.ndarray], border: int) -> float:
    """PSNR-Y (BT.601, ``border`` pixels cropped) of a set of uint8 RGB images, on their pooled squared error."""
    squared = [(rgb_to_y(a) - rgb_to_y(b))[border:-border or None, border:-border or None].ravel() ** 2
               for a, b in zip(images, refs)]
    mse = float(np.mean(np.concatenate(squared)))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def psnr_delta(arm: float, x86: float) -> float:
    """``arm - x86``; 0 when both are infinite (identical images)."""
    return 0.0 if arm == x86 else arm - x86


@dataclass
class Result:
    """One (artifact, runtime, core): what the JSON records hold."""

    artifact: str
    runtime: str
    precision: str
    core: str
    identical: float | None = None     # share of output values equal to x86's, 0..1
    max_diff: float | None = None      # grey levels
    psnr_gt: float | None = None       # PSNR-Y against ground truth, dB (in the records, None: infinite)
    psnr_gt_x86: float | None = None   # the same artifact's on x86
    d_psnr_gt: float | None = None     # psnr_gt - psnr_gt_x86 (0 when both are infinite)
    psnr_fp32: float | None = None     # PSNR-Y against the FP32 model's output on x86, dB
    psnr_fp32_x86: float | None = None
    d_psnr_fp32: float | None = None
    same_runtime_identical: float | None = None   # the same against the runner's output with the same runtime on x86
    same_runtime_max_diff: float | None = None    # (differs from the above for litert-builtin only)
    seconds: float | None = None       # time inside the emulator (loading and running)
    error: str | None = None
    checked: bool = False              # judged (a default runtime on a phone core), not only reported
    verdict: str = ""

    def record(self) -> dict:
        """For JSON: infinite PSNRs (identical images) become None."""
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(self).items()}


def judge(result: Result, checked: bool, emulator_ok: bool = True) -> Result:
    """Set ``checked`` and ``verdict`` by the rule of this module."""
    result.checked = checked and emulator_ok
    if not emulator_ok:
        result.verdict = UNTRUSTED
    elif not checked:
        result.verdict = REPORTED
    elif result.error is not None or result.max_diff is None:
        result.verdict = FAIL
    elif result.precision == "int8":
        result.verdict = PASS if result.max_diff == 0 and result.identical == 1.0 else FAIL
    else:
        result.verdict = PASS if result.max_diff <= FP32_TOLERANCE else FAIL
    return result


def summary(results: Sequence[Result]) -> tuple[bool, str]:
    """(passed, the verdict line)."""
    checked = [r for r in results if r.checked]
    failed = [r for r in checked if r.verdict == FAIL]
    untrusted = sorted({r.core for r in results if r.verdict == UNTRUSTED})
    note = f"; not judged on {', '.join(untrusted)} (the emulator failed its SME self-check)" if untrusted else ""
    if failed:
        shown = "; ".join(f"{r.artifact} {r.runtime} on {r.core}: "
                          + (r.error or f"{100 * r.identical:.2f}% identical, max {r.max_diff:g} levels")
                          for r in failed[:3])
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        return False, f"ARM64 check FAILED: {len(failed)} of {len(checked)} judged rows differ from x86: {shown}{more}{note}"
    if not checked:
        return False, f"ARM64 check FAILED: nothing was judged (no default runtime on a phone core ran){note}"
    cores = sorted({r.core for r in checked})
    int8 = [r for r in checked if r.precision == "int8"]
    fp32 = [r for r in checked if r.precision == "fp32"]
    worst_fp32 = max((r.max_diff for r in fp32), default=0.0)
    reported = [r for r in results if r.verdict == REPORTED and r.max_diff is not None]
    worst_reported = max((r.max_diff for r in reported), default=0.0)
    parts = [f"{len(int8)} INT8 rows bit-identical to x86"] if int8 else []
    parts += [f"{len(fp32)} FP32 rows within {FP32_TOLERANCE:g} grey levels (max {worst_fp32:.2g})"] if fp32 else []
    return True, (f"ARM64 check passed: {' and '.join(parts)} on {len(cores)} phone cores ({', '.join(cores)}); "
                  f"{len(reported)} rows reported only (max {worst_reported:g} levels){note}")
