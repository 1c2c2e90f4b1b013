"""Runs model files inside the arm64 root (``python3 runner.py JOBS.json``): .npy inputs in, .npy outputs out.

Self-contained on purpose: it is copied into the emulated root, where only numpy and the runtimes'
aarch64 wheels are installed, so it never imports elsr. Each input is the tensor the model takes
(prepared on x86 by ``elsr.runtime``: layout, dtype, range), or an .npz of one tensor per model input
(arr_0, arr_1, ...), and each output is the raw tensor the runtime returns. One JSON line per job on stdout: ``{"job": ID, "started": true}`` before it runs, then
``{"job": ID, "seconds": S}`` or ``{"job": ID, "error": TEXT}``; a job that started and never ended
crashed the process (the host then runs the remaining jobs in a new one).

A new runtime is one loader in ``LOADERS`` (and a row in ``targets.RUNTIMES``).
"""

import json
import os
import sys
import time

import numpy as np


def onnxruntime_loader(model, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = [arg.name for arg in session.get_inputs()]
    return lambda xs: session.run(None, dict(zip(names, xs)))[0]


def litert_loader(xnnpack):
    def load(model, threads):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        extra = {} if xnnpack else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        interpreter = Interpreter(model_path=model, num_threads=threads, **extra)
        sources = [detail["index"] for detail in interpreter.get_input_details()]
        result = interpreter.get_output_details()[0]["index"]

        def run(xs):
            for source, x in zip(sources, xs):
                interpreter.resize_tensor_input(source, list(x.shape))
            interpreter.allocate_tensors()
            for source, x in zip(sources, xs):
                interpreter.set_tensor(source, x)
            interpreter.invoke()
            return interpreter.get_tensor(result)
        return run
    return load


LOADERS = {
    "onnxruntime": onnxruntime_loader,
    "litert-xnnpack": litert_loader(True),
    "litert-builtin": litert_loader(False),
}


def inputs(path):
    """The model's inputs: one tensor (.npy), or arr_0, arr_1, ... of an .npz."""
    if not path.endswith(".npz"):
        return [np.load(path)]
    with np.load(path) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


def say(**fields):
    print(json.dumps(fields), flush=True)


def main(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    for job in spec["jobs"]:
        say(job=job["id"], started=True)
        started = time.perf_counter()
        try:
            run = LOADERS[job["runtime"]](job["model"], spec.get("threads", 1))
            for source, target in zip(job["inputs"], job["outputs"]):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                np.save(target, run(inputs(source)))
        except Exception as exc:  # noqa: BLE001 - reported to the host, which records it for this job
            say(job=job["id"], error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
            continue
        say(job=job["id"], seconds=round(time.perf_counter() - started, 2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
