"""Does the emulator compute SME's integer outer products right? A 30-instruction aarch64 program, checked.

XNNPACK runs INT8 convolutions on cores with SME through KleidiAI's outer-product kernels (``SMOPA``
into the ZA tiles, ``ADDHA`` for the zero-point terms, ``MOVA`` out). QEMU 7.2 (Debian bookworm)
computes the 4-way ``SMOPA`` wrongly: its helper pairs the bytes of the two vectors element by element
instead of forming the outer product, so three of every four 32-bit accumulators are wrong, and
XNNPACK's output is garbage there. That is the emulator, not the kernels: a check that finds it must
not blame the phone. This program runs, without any root file system, straight in ``qemu-aarch64``:

    smstart; rdsvl x19, #1; ptrue p0.b; ptrue p1.s
    ld1b {z0.b}, p0/z, [vec_a]; ld1b {z1.b}, p0/z, [vec_b]; ld1w {z2.s}, p1/z, [vec_c]
    zero {za}
    smopa za1.s, p0/m, p0/m, z0.b, z1.b      // za1[i][j] = sum_k a[4i+k] * b[4j+k]
    smopa za3.s, p0/m, p0/m, z1.b, z0.b      // za3[i][j] = sum_k b[4i+k] * a[4j+k]
    addha za2.s, p1/m, p1/m, z2.s            // za2[i][j] = c[j]
    str za[w12, 0], [outbuf + w12 * SVL]     // every ZA row, w12 = 0 .. SVL-1
    smstop; write(1, svl_and_outbuf); exit(0)

and its ZA array is compared with numpy's. A core without SME stops it with SIGILL ("no SME").
The machine code below was assembled with GNU as 2.40 (``-march=armv9-a+sme``); the data sit at
fixed offsets after it.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np

CODE = (
    0xd503477f,  # smstart
    0x04bf5833,  # rdsvl x19, #1
    0x2518e3e0,  # ptrue p0.b
    0x2598e3e1,  # ptrue p1.s
    0x10001780,  # adr x0, vec_a
    0xa400a000,  # ld1b {z0.b}, p0/z, [x0]
    0x10001f40,  # adr x0, vec_b
    0xa400a001,  # ld1b {z1.b}, p0/z, [x0]
    0x10002700,  # adr x0, vec_c
    0xa540a402,  # ld1w {z2.s}, p1/z, [x0]
    0xc00800ff,  # zero {za}
    0xa0810001,  # smopa za1.s, p0/m, p0/m, z0.b, z1.b
    0xa0800023,  # smopa za3.s, p0/m, p0/m, z1.b, z0.b
    0xc0902442,  # addha za2.s, p1/m, p1/m, z2.s
    0x10002e95,  # adr x21, outbuf
    0x5280000c,  # mov w12, #0
    0xe12002a0,  # str za[w12, 0], [x21]
    0x8b1302b5,  # add x21, x21, x19
    0x1100058c,  # add w12, w12, #1
    0xeb13019f,  # cmp x12, x19
    0x54ffff8b,  # b.lt (the str)
    0xd503467f,  # smstop
    0x10002d41,  # adr x1, svl
    0xf9000033,  # str x19, [x1]
    0xd2800020,  # mov x0, #1
    0x9b137e62,  # mul x2, x19, x19
    0x91002042,  # add x2, x2, #8
    0xd2800808,  # mov x8, #64 (write)
    0xd4000001,  # svc #0
    0xd2800000,  # mov x0, #0
    0xd2800ba8,  # mov x8, #93 (exit)
    0xd4000001,  # svc #0
)
VEC_A, VEC_B, VEC_C, SVL_AT = 0x300, 0x400, 0x500, 0x600   # offsets from the first instruction
MAX_SVL = 256                                               # bytes: SME's largest streaming vector
BASE, CODE_AT = 0x400000, 0x80                              # load address; the code's file offset
OK, WRONG, NO_SME = "ok", "WRONG", "no SME"


def vectors(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(-128, 128, MAX_SVL, dtype=np.int8), rng.integers(-128, 128, MAX_SVL, dtype=np.int8),
            rng.integers(-2 ** 20, 2 ** 20, MAX_SVL // 4, dtype=np.int32))


def program(seed: int = 0) -> bytes:
    """The static aarch64 ELF executable: one read-write-execute segment, code then data then room for ZA."""
    a, b, c = vectors(seed)
    body = bytearray(SVL_AT + 8)
    body[:4 * len(CODE)] = struct.pack(f"<{len(CODE)}I", *CODE)
    for offset, data in ((VEC_A, a), (VEC_B, b), (VEC_C, c)):
        body[offset:offset + data.nbytes] = data.tobytes()
    file_size = CODE_AT + len(body)
    memory = file_size + MAX_SVL * MAX_SVL
    header = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, 0xB7, 1, BASE + CODE_AT, 64, 0, 0,
                         64, 56, 1, 0, 0, 0)
    segment = struct.pack("<IIQQQQQQ", 1, 7, 0, BASE, BASE, file_size, memory, 0x1000)
    return (header + segment).ljust(CODE_AT, b"\0") + bytes(body)


def expected(svl: int, seed: int = 0) -> np.ndarray:
    """The ZA array (``svl`` rows of ``svl / 4`` int32) the program must leave: 32-bit tile k holds rows k, k+4, ..."""
    a, b, c = (v.astype(np.int64) for v in vectors(seed))
    n = svl // 4
    za = np.zeros((svl, n), np.int64)
    rows_a, rows_b = a[:svl].reshape(n, 4), b[:svl].reshape(n, 4)
    za[1::4] += rows_a @ rows_b.T
    za[3::4] += rows_b @ rows_a.T
    za[2::4] += c[:n][None, :]
    return ((za + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)


def judge_output(returncode: int, output: bytes, seed: int = 0) -> tuple[str, str]:
    """(OK / WRONG / NO_SME, detail) from the program's exit status and output."""
    if returncode in (-4, 132):          # SIGILL: SMSTART is not an instruction of this core
        return NO_SME, "SMSTART is an illegal instruction here"
    svl = int.from_bytes(output[:8], "little") if len(output) >= 8 else 0
    if returncode != 0 or svl not in (16, 32, 64, 128, 256) or len(output) != 8 + svl * svl:
        return WRONG, f"exit status {returncode}, {len(output)} bytes of output"
    za = np.frombuffer(output[8:], np.int32).reshape(svl, svl // 4)
    want = expected(svl, seed)
    bad = np.count_nonzero(za != want)
    if bad:
        return WRONG, (f"SMOPA/ADDHA: {bad} of {za.size} ZA words wrong (streaming vector {8 * svl} bits): "
                       "the emulator's SME arithmetic is broken here")
    return OK, f"SMOPA (4-way int8), ADDHA and ZA stores exact (streaming vector {8 * svl} bits)"


def run_check(qemu: Path, core: str, folder: Path, timeout: float = 60) -> tuple[str, str]:
    """Run the program in ``qemu`` on ``core`` (no root file system needed); (OK / WRONG / NO_SME, detail)."""
    path = folder / "smecheck.elf"
    path.write_bytes(program())
    path.chmod(0o755)
    done = subprocess.run([str(qemu), "-cpu", core, str(path)], capture_output=True, timeout=timeout)
    return judge_output(done.returncode, done.stdout)
