"""The ARM64 check's tables (markdown): agreement with x86 per artifact, runtime and core; quality; cores."""

from __future__ import annotations

from elsr.benchmarks.arm64.compare import FAIL, FP32_TOLERANCE, UNTRUSTED
from elsr.benchmarks.arm64.probes import probes_table
from elsr.benchmarks.arm64.targets import core_named, runtime_named


def _share(identical: float) -> str:
    if identical == 1.0:
        return "100%"
    return f"{100 * identical:.2f}%" if identical > 0.99 else f"{100 * identical:.1f}%"


def _levels(value: float, precision: str) -> str:
    return f"{value:.0f}" if precision == "int8" else f"{value:.2g}"


def cell(record: dict) -> str:
    if record["error"]:
        text = f"error: {record['error'][:60]}"
    else:
        text = f"{_share(record['identical'])} / {_levels(record['max_diff'], record['precision'])}"
    if record["verdict"] == FAIL:
        return f"**FAIL** {text}"
    return f"({UNTRUSTED}) {text}" if record["verdict"] == UNTRUSTED else text


def rule(precision: str, runtime: str) -> str:
    if not runtime_named(runtime).phone_default:
        return "reported"
    return "identical" if precision == "int8" else f"within {FP32_TOLERANCE:g}"


def agreement_table(result: dict) -> str:
    """Rows: (artifact, runtime); columns: cores; cells: share of output values equal to x86's / max difference."""
    cores = result["cores"]
    heads = [c if core_named(c).phone else f"{c} (reported)" for c in cores]
    lines = ["| artifact | runtime | rule | " + " | ".join(heads) + " |", "|---|---|---|" + "---:|" * len(cores)]
    rows: dict[tuple[str, str], dict[str, dict]] = {}
    for record in result["records"]:
        rows.setdefault((record["artifact"], record["runtime"]), {})[record["core"]] = record
    for (artifact, runtime), by_core in rows.items():
        precision = next(iter(by_core.values()))["precision"]
        lines.append(f"| `{artifact}` | {runtime} | {rule(precision, runtime)} | "
                     + " | ".join(cell(by_core[c]) if c in by_core else "-" for c in cores) + " |")
    return "\n".join(lines) + "\n"


def _db(value: float | None) -> str:
    return "inf" if value is None else f"{value:.2f}"


def _lowest(values: list[float | None]) -> str:
    """The lowest PSNR on the emulated cores (None: identical images, infinite PSNR)."""
    found = [v for v in values if v is not None]
    return _db(min(found)) if found else "inf" if values else "-"


def quality_table(result: dict) -> str:
    """PSNR-Y against ground truth and against the FP32 model, on x86 and the lowest on the emulated cores, per
    (artifact, runtime); and the time each core took."""
    lines = ["| artifact | runtime | PSNR-Y vs ground truth: x86 | lowest on ARM | PSNR-Y vs FP32 model: x86 | "
             "lowest on ARM | against the same runtime on x86 (worst core) | seconds per core (min-max) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    rows: dict[tuple[str, str], list[dict]] = {}
    for record in result["records"]:
        rows.setdefault((record["artifact"], record["runtime"]), []).append(record)
    for (artifact, runtime), records in rows.items():
        ran = [r for r in records if r["error"] is None]
        seconds = [r["seconds"] for r in ran]
        gt, fp32 = (_db(ran[0]["psnr_gt_x86"]), _db(ran[0]["psnr_fp32_x86"])) if ran else ("-", "-")
        span = f"{min(seconds):.1f}-{max(seconds):.1f}" if seconds else "-"
        same = "-"
        if ran:
            worst = min(ran, key=lambda r: (r["same_runtime_identical"], -r["same_runtime_max_diff"]))
            same = (f"{_share(worst['same_runtime_identical'])} / "
                    f"{_levels(worst['same_runtime_max_diff'], worst['precision'])}")
        lines.append(f"| `{artifact}` | {runtime} | {gt} | {_lowest([r['psnr_gt'] for r in ran])} | {fp32} | "
                     f"{_lowest([r['psnr_fp32'] for r in ran])} | {same} | {span} |")
    return "\n".join(lines) + "\n"


def cores_table(result: dict) -> str:
    lines = ["| core (QEMU_CPU) | phone core | SME self-check | what |", "|---|---|---|---|"]
    for name in result["cores"]:
        core = core_named(name)
        check = result["sme_selfcheck"][name]
        lines.append(f"| `{name}` | {'yes' if core.phone else 'no (reported)'} | {check['status']} | {core.what} |")
    return "\n".join(lines) + "\n"


HEADING = "## ARM64 (emulated)"
SECTION = "arm64"  # its name among the sections of BENCHMARKS.md (elsr.io.files.write_section)


def markdown(result: dict, command: str) -> str:
    """The section BENCHMARKS.md keeps under ``HEADING`` (``--markdown``), with the command that wrote it."""
    env, timings = result["environment"], result["timings"]
    wheels = ", ".join(f"{k} {v}" for k, v in env["wheels"].items())
    return (f"{HEADING}\n\n"
            "Every mobile artifact, exported from the bundled models at run time, run on x86 (`elsr.runtime`) and on "
            "emulated ARM64 cores (QEMU user mode, a Debian arm64 root, the same runtime versions as aarch64 wheels). "
            "Emulation runs the phone's instructions and the runtimes' kernel selection for that core, not its "
            "timing: the seconds below are the emulator's.\n\n"
            f"QEMU {env['qemu']} ({env['qemu_package']}, Debian {env['qemu_suite']}); {env['root']}; {wheels}; "
            f"{env['images']}; {env['threads']} thread(s) per runtime.\n\n"
            "Share of output values identical to x86's / largest difference in grey levels (rule: `identical` fails "
            f"the check on any difference, `within {FP32_TOLERANCE:g}` on more than that many grey levels, `reported` "
            "never; a core marked (reported) is not a phone core):\n\n"
            + agreement_table(result) + "\n" + quality_table(result) + "\n" + cores_table(result)
            + ("\nEach INT8 operator alone (`--probes`: random int8 inputs; share of int8 outputs equal to x86's with "
               "the same runtime / largest difference in int8 steps):\n\n" + probes_table(result["probes"],
                                                                                     result["cores"])
               if result.get("probes") else "")
            + f"\nTimes: set-up {timings['setup_s']} s, export {timings.get('export_s', '-')} s, x86 "
              f"{timings.get('x86_s', '-')} s, emulation {timings.get('emulation_s', '-')} s, total "
              f"{timings['total_s']} s.\n\n{result['verdict']}\n\n"
              f"Rerun with (as root):\n\n```bash\n{command}\n```\n")
