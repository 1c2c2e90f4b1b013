"""``python -m elsr.benchmarks.arm64``: the mobile artifacts on emulated phone cores, against x86, bit for bit.

Phones run ARM64 kernels (onnxruntime's MLAS, LiteRT's XNNPACK: NEON, dot product, i8mm, SVE2,
SME2 paths) that no x86 test exercises. This check runs them without a phone: it exports every
artifact of ``artifacts.ARTIFACTS`` from the bundled models, runs each on a fixed set of real images
on x86 (``elsr.runtime``) and, inside a Debian arm64 root under QEMU user emulation, on each emulated
core of ``targets.CORES`` through each runtime of the artifact, and compares (``compare``): an INT8
difference through a runtime an app gets by default on a phone core fails it (exit code 1).

Set-up (``environment``; root, once, cached): Debian's mmdebstrap, a static qemu-aarch64 from the
machine's Debian mirror, an arm64 root with Debian's python3, and aarch64 wheels of the same numpy,
onnxruntime and ai-edge-litert versions as installed here. Every emulated run is sandboxed
(``sandbox``): private user, mount and PID namespaces with their own binfmt_misc, so nothing is left
mounted or registered on the machine. Before trusting a core with SME, the emulator's own SME
arithmetic is checked (``smecheck``). Emulation is not a phone: it runs the phone's instructions and
kernel selection, not its timing, caches or drivers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from elsr.benchmarks.arm64.artifacts import Artifact, artifacts_named, export_artifacts
from elsr.benchmarks.arm64.compare import Result, agreement, judge, pooled_psnr_y, psnr_delta, summary
from elsr.benchmarks.arm64.environment import (QEMU_SUITE, Qemu, debian_mirror, default_cache, ensure_host_tools,
                                               ensure_qemu, ensure_root, ensure_site, host_versions, preflight,
                                               root_glibc, root_python)
from elsr.benchmarks.arm64.probes import Probe, compare_probes, probe_jobs, write_probes
from elsr.benchmarks.arm64.sandbox import WORK_IN_ROOT, Sandbox
from elsr.benchmarks.arm64.smecheck import NO_SME, WRONG, run_check
from elsr.benchmarks.arm64.targets import BASE_DISTRIBUTIONS, DEFAULT_CORES, core_named, runtime_named
from elsr.data.bicubic import downscale
from elsr.errors import ElsrError
from elsr.io.images import list_images, read_image
from elsr.model.inference import array_to_image, image_to_array
from elsr.pretrained import MODELS
from elsr.runtime.loaders import load_upscaler


SCALE = 4
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")   # scikit-image's bundled photos
RUNNER = Path(__file__).with_name("runner.py")
X86 = "x86"      # the runner's outputs on this machine, for each artifact and runtime


@dataclass
class Arm64Config:
    cache: Path = field(default_factory=default_cache)   # QEMU, the arm64 root and the wheels (outside the repo)
    cores: tuple[str, ...] = DEFAULT_CORES               # QEMU_CPU values
    qemu_suite: str = QEMU_SUITE                         # the Debian suite whose qemu-user(-static) runs them
    hr: Path | None = None                               # HR images (default: scikit-image's photos)
    convert: bool = False                                # greyscale / RGBA / 16-bit HR images converted
    crop: int = 40                                       # side of the centre crop of each LR image
    artifacts: list[str] | None = None                   # file names of artifacts.ARTIFACTS (default: all)
    jobs: int = 2                                        # emulated cores run at once
    threads: int = 1                                     # each runtime's threads inside the emulator
    timeout: float = 1800.0                              # seconds for one core's runs
    probes: bool = False                                 # also each INT8 TFLite operator alone (probes.py)


@dataclass
class Reference:
    """An artifact on x86: its raw outputs, how to read them, and its scores."""

    raw: list[np.ndarray]
    to_float: Callable[[np.ndarray], np.ndarray]
    psnr_gt: float
    psnr_fp32: float

    def image(self, raw: np.ndarray) -> np.ndarray:
        return array_to_image(self.to_float(raw))


def slug(core: str) -> str:
    return core.replace(",", "_").replace("=", "-")


def check_images(cfg: Arm64Config) -> list[tuple[str, np.ndarray]]:
    """(name, HR) pairs: the centre crop (``crop`` x SCALE pixels a side at most) of each image."""
    if cfg.hr is not None:
        images = [(p.name, read_image(p, cfg.convert)) for p in list_images(cfg.hr)]
        if not images:
            raise ElsrError("no images in this folder", path=cfg.hr, fix="pass a folder of HR images")
    else:
        from skimage import data as photos
        images = [(name, np.ascontiguousarray(getattr(photos, name)()[:, :, :3])) for name in PHOTOS]
    side = cfg.crop * SCALE
    crops = []
    for name, hr in images:
        height, width = (min(side, d) // SCALE * SCALE for d in hr.shape[:2])
        top, left = (hr.shape[0] - height) // 2, (hr.shape[1] - width) // 2
        crops.append((name, np.ascontiguousarray(hr[top:top + height, left:left + width])))
    return crops


def x86_references(artifacts: tuple[Artifact, ...], models: dict[str, Path], lrs: list[np.ndarray],
                   hrs: list[np.ndarray], fp32: list[np.ndarray], work: Path) -> dict[str, Reference]:
    """Run each artifact on x86 (``elsr.runtime``); write the prepared inputs for the emulated runs."""
    references = {}
    for artifact in artifacts:
        upscaler = load_upscaler(models[artifact.file], SCALE, device="cpu")
        raw = []
        for i, lr in enumerate(lrs):
            prepared = upscaler.prepare(image_to_array(lr))
            (work / "in" / artifact.file).mkdir(parents=True, exist_ok=True)
            np.save(work / "in" / artifact.file / f"{i}.npy", prepared)
            raw.append(np.array(upscaler.forward(prepared)))
        reference = Reference(raw, upscaler.fetch, 0.0, 0.0)
        images = [reference.image(y) for y in raw]
        reference.psnr_gt = pooled_psnr_y(images, hrs, SCALE)
        reference.psnr_fp32 = pooled_psnr_y(images, fp32, SCALE)
        references[artifact.file] = reference
    return references


def jobs_for(core: str, artifacts: tuple[Artifact, ...], count: int, folder: str = WORK_IN_ROOT) -> list[dict]:
    """The runner's jobs on one core: every (artifact, runtime), with paths under ``folder`` (the work folder as
    the runner sees it: inside the root, or on this machine for the x86 run)."""
    return [{"id": f"{a.file}:{runtime}", "model": f"{folder}/models/{a.file}", "runtime": runtime,
             "inputs": [f"{folder}/in/{a.file}/{i}.npy" for i in range(count)],
             "outputs": [f"{folder}/out/{slug(core)}/{runtime}/{a.file}/{i}.npy" for i in range(count)]}
            for a in artifacts for runtime in a.runtimes]


def describe_exit(code: int) -> str:
    signal = -code if code < 0 else code - 128 if code > 128 else 0
    return f"signal {signal}" if signal else f"exit status {code}"


Launch = Callable[[Path], subprocess.CompletedProcess]   # runs runner.py on a jobs file of the work folder


def in_sandbox(sandbox: Sandbox, core: str, timeout: float) -> Launch:
    return lambda spec: sandbox.run(["/usr/bin/python3", f"{WORK_IN_ROOT}/runner.py", f"{WORK_IN_ROOT}/{spec.name}"],
                                    core, timeout)


def on_this_machine(timeout: float) -> Launch:
    return lambda spec: subprocess.run([sys.executable, str(RUNNER), str(spec)], capture_output=True, text=True,
                                       timeout=timeout)


def run_jobs(launch: Launch, work: Path, core: str, jobs: list[dict],
             threads: int) -> dict[str, tuple[float | None, str | None]]:
    """Run ``jobs`` through the runner: job id -> (seconds, error). A crash ends the job it was in; the others
    run on in a new process."""
    outcome: dict[str, tuple[float | None, str | None]] = {}
    remaining = jobs
    while remaining:
        spec = work / f"jobs-{slug(core)}.json"
        spec.write_text(json.dumps({"threads": threads, "jobs": remaining}))
        done = launch(spec)
        running = None
        for line in done.stdout.splitlines():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("started"):
                running = message["job"]
            elif "seconds" in message or "error" in message:
                outcome[message["job"]] = (message.get("seconds"), message.get("error"))
                running = None
        tail = " ".join((done.stderr.strip().splitlines() or [""])[-1].split())[:300]
        if running is not None:
            outcome[running] = (None, f"the process died ({describe_exit(done.returncode)}) {tail}".strip())
        elif done.returncode != 0:
            for job in remaining:
                outcome.setdefault(job["id"], (None, f"the runner failed ({describe_exit(done.returncode)}) {tail}"))
        remaining = [job for job in remaining if job["id"] not in outcome]
    return outcome


def load_outputs(work: Path, core: str, runtime: str, artifact: str, count: int) -> list[np.ndarray]:
    folder = work / "out" / slug(core) / runtime / artifact
    return [np.load(folder / f"{i}.npy") for i in range(count)]


def compare_core(core: str, artifacts: tuple[Artifact, ...], references: dict[str, Reference],
                 outcome: dict[str, tuple[float | None, str | None]], hrs: list[np.ndarray], fp32: list[np.ndarray],
                 work: Path, emulator_ok: bool) -> list[Result]:
    results = []
    for artifact in artifacts:
        reference = references[artifact.file]
        for runtime in artifact.runtimes:
            seconds, error = outcome[f"{artifact.file}:{runtime}"]
            result = Result(artifact.file, runtime, artifact.precision, core, seconds=seconds, error=error)
            if error is None:
                arm = load_outputs(work, core, runtime, artifact.file, len(hrs))
                try:
                    found = agreement(arm, reference.raw, reference.to_float)
                    same = agreement(arm, load_outputs(work, X86, runtime, artifact.file, len(hrs)),
                                     reference.to_float)
                except (ValueError, OSError) as exc:
                    result.error = str(exc)
                else:
                    result.same_runtime_identical, result.same_runtime_max_diff = same.identical, same.max_diff
                    result.identical, result.max_diff = found.identical, found.max_diff
                    images = [reference.image(y) for y in arm]
                    result.psnr_gt, result.psnr_gt_x86 = pooled_psnr_y(images, hrs, SCALE), reference.psnr_gt
                    result.d_psnr_gt = psnr_delta(result.psnr_gt, reference.psnr_gt)
                    result.psnr_fp32, result.psnr_fp32_x86 = pooled_psnr_y(images, fp32, SCALE), reference.psnr_fp32
                    result.d_psnr_fp32 = psnr_delta(result.psnr_fp32, reference.psnr_fp32)
            checked = runtime_named(runtime).phone_default and core_named(core).phone
            results.append(judge(result, checked, emulator_ok))
    return results


def emulation_cost(core: str) -> float:
    """How long a core's runs take, roughly (float kernels on SME are the slowest to emulate)."""
    if core.startswith("max") and "sme=off" not in core:
        return 4.0
    return {"cortex-a53": 1.5, "cortex-a710": 0.6}.get(core, 1.0)


def check_cores(qemu: Qemu, cores: tuple[str, ...]) -> None:
    known = qemu.cores()
    unknown = [c for c in cores if c.split(",")[0] not in known]
    if unknown:
        raise ElsrError(f"QEMU {qemu.version} ({qemu.suite}) has no core {unknown[0].split(',')[0]!r}",
                        fix=f"choose --cores among {', '.join(known)}, or another --qemu-suite")


def set_up(cfg: Arm64Config, artifacts: tuple[Artifact, ...], emit: Callable[[str], None]) -> tuple[Qemu, Path, Path, dict]:
    """Everything the emulated runs need (cached): QEMU, the arm64 root, the wheels."""
    if ":" in str(cfg.cache):
        raise ElsrError("the cache path may not contain ':' (binfmt_misc's separator)", path=cfg.cache,
                        fix="choose another --cache")
    preflight()
    runtimes = {runtime_named(r) for a in artifacts for r in a.runtimes}
    versions = host_versions([*BASE_DISTRIBUTIONS, *sorted({d for r in runtimes for d in r.distributions})])
    mirror = debian_mirror()
    ensure_host_tools(emit)
    qemu = ensure_qemu(cfg.cache, mirror, cfg.qemu_suite, emit)
    check_cores(qemu, cfg.cores)
    root = ensure_root(cfg.cache, mirror, emit)
    python, glibc = root_python(root), root_glibc(root)
    site = ensure_site(cfg.cache, versions, python, glibc, emit)
    environment = {"qemu": qemu.version, "qemu_package": qemu.package, "qemu_suite": qemu.suite,
                   "root": f"Debian {mirror.codename} arm64, Python {python[0]}.{python[1]}, glibc {glibc[0]}.{glibc[1]}",
                   "wheels": versions}
    return qemu, root, site, environment


@dataclass
class X86Side:
    """What every core is compared with: the images, the FP32 model's pictures, each artifact on x86."""

    hrs: list[np.ndarray]
    lrs: list[np.ndarray]
    fp32: list[np.ndarray]
    references: dict[str, Reference]
    probes: list[Probe]
    description: str


def sme_selfchecks(qemu: Qemu, cores: tuple[str, ...], work: Path, emit: Callable[[str], None]) -> dict[str, dict]:
    checks = {}
    for core in cores:
        status, detail = run_check(qemu.path, core, work)
        checks[core] = {"status": status, "detail": detail}
        if status != NO_SME:
            emit(f"{core}: SME self-check of QEMU {qemu.version}: {status} ({detail})")
    return checks


def run_x86(cfg: Arm64Config, artifacts: tuple[Artifact, ...], work: Path, timings: dict) -> X86Side:
    """Export the artifacts, run them on x86 through elsr.runtime and through the runner (the same outputs, or the
    check is void), and write the inputs of the emulated runs."""
    mark = time.perf_counter()
    models = export_artifacts(artifacts, work / "models")
    probes = write_probes(work, cfg.crop) if cfg.probes else []
    timings["export_s"] = round(time.perf_counter() - mark, 1)
    mark = time.perf_counter()
    images = check_images(cfg)
    hrs = [hr for _, hr in images]
    lrs = [downscale(hr, SCALE) for hr in hrs]
    fp32_model = load_upscaler(MODELS["x4"], SCALE, device="cpu")
    fp32 = [fp32_model(lr) for lr in lrs]
    references = x86_references(artifacts, models, lrs, hrs, fp32, work)
    shutil.copy2(RUNNER, work / "runner.py")
    outcome = run_jobs(on_this_machine(cfg.timeout), work, X86,
                       jobs_for(X86, artifacts, len(lrs), str(work)) + probe_jobs(X86, probes, str(work)), cfg.threads)
    for job, (_, error) in outcome.items():
        if error:
            raise ElsrError(f"the runner fails on this machine: {job}: {error}",
                            fix="check that onnxruntime and ai-edge-litert import here")
    for artifact in artifacts:
        for runtime in (r for r in artifact.runtimes if runtime_named(r).phone_default):
            found = agreement(load_outputs(work, X86, runtime, artifact.file, len(lrs)),
                              references[artifact.file].raw, references[artifact.file].to_float)
            if found.identical != 1.0:
                raise ElsrError(f"the runner's x86 output of {artifact.file} through {runtime} differs from "
                                f"elsr.runtime's ({100 * found.identical:.2f}% identical)",
                                fix="make benchmarks/arm64/runner.py call the runtime as elsr.runtime does")
    timings["x86_s"] = round(time.perf_counter() - mark, 1)
    pixels = sum(lr.shape[0] * lr.shape[1] for lr in lrs)
    description = (f"{len(images)} images ({'scikit-image photos' if cfg.hr is None else cfg.hr}), centre crops of "
                   f"at most {cfg.crop}x{cfg.crop} LR pixels, {pixels} LR pixels in all")
    return X86Side(hrs, lrs, fp32, references, probes, description)


def run_emulated(cfg: Arm64Config, artifacts: tuple[Artifact, ...], sandbox: Sandbox, x86: X86Side,
                 sme: dict[str, dict], emit: Callable[[str], None]) -> tuple[list[Result], list[dict]]:
    """Every core's runs (``cfg.jobs`` cores at once, the slowest first), compared with x86's."""
    work = sandbox.work

    def one(core: str) -> tuple[list[Result], list[dict]]:
        started = time.perf_counter()
        jobs = jobs_for(core, artifacts, len(x86.lrs)) + probe_jobs(slug(core), x86.probes, WORK_IN_ROOT)
        outcome = run_jobs(in_sandbox(sandbox, core, cfg.timeout), work, core, jobs, cfg.threads)
        found = compare_core(core, artifacts, x86.references, outcome, x86.hrs, x86.fp32, work,
                             sme[core]["status"] != WRONG)
        emit(f"{core}: {len(outcome)} runs in {time.perf_counter() - started:.0f} s")
        return found, compare_probes(work, core, slug(core), X86, x86.probes, outcome)

    order = sorted(cfg.cores, key=emulation_cost, reverse=True)
    with ThreadPoolExecutor(max_workers=cfg.jobs) as pool:
        by_core = dict(zip(order, pool.map(one, order)))
    results = [r for core in cfg.cores for r in by_core[core][0]]
    return results, [p for core in cfg.cores for p in by_core[core][1]]


def run_arm64(cfg: Arm64Config, emit: Callable[[str], None] = print) -> dict:
    """Set up (or reuse) the arm64 environment, run every artifact on every core, compare with x86."""
    started = time.perf_counter()
    artifacts = artifacts_named(cfg.artifacts)
    if cfg.crop < 16 or cfg.jobs < 1 or cfg.threads < 1:
        raise ElsrError("--crop must be at least 16, --jobs and --threads at least 1", fix="raise them")
    qemu, root, site, environment = set_up(cfg, artifacts, emit)
    timings = {"setup_s": round(time.perf_counter() - started, 1)}
    cfg.cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=cfg.cache))
    try:
        sme = sme_selfchecks(qemu, cfg.cores, work, emit)
        x86 = run_x86(cfg, artifacts, work, timings)
        mark = time.perf_counter()
        sandbox = Sandbox(qemu.path, root, site, work, fake_cpuinfo=not qemu.emulates_cpuinfo)
        results, probe_records = run_emulated(cfg, artifacts, sandbox, x86, sme, emit)
        timings["emulation_s"] = round(time.perf_counter() - mark, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    passed, verdict = summary(results)
    timings["total_s"] = round(time.perf_counter() - started, 1)
    environment.update(images=x86.description, threads=cfg.threads)
    return {"passed": passed, "verdict": verdict, "cores": list(cfg.cores), "environment": environment,
            "sme_selfcheck": sme, "timings": timings, "records": [r.record() for r in results],
            **({"probes": probe_records} if cfg.probes else {})}
