"""Running a command inside the arm64 root under QEMU, with nothing leaking onto this machine.

Each run gets its own user namespace (uids mapped one to one, so root stays root and files keep their
owners), mount namespace and PID namespace. Inside them:

- binfmt_misc is mounted afresh: since Linux 6.7 a user namespace gets its own binfmt_misc instance,
  so the ``qemu-aarch64`` registration (flag F: the kernel opens the interpreter at once, so the root
  needs no copy of it) exists only for this run and disappears with it; the machine's own binfmt_misc
  (registered or not, mounted or not) is never touched;
- the root gets ``/proc`` (of the new PID namespace), ``/sys`` and ``/dev`` (cpuinfo reads ``/sys``:
  without it LiteRT silently skips XNNPACK), the wheels at ``/opt/elsr/site`` and the work folder at
  ``/work``; all mounts are private and vanish when the run ends;
- QEMU before 8.2 does not emulate ``/proc/cpuinfo`` (onnxruntime then reads the host's x86 one and
  crashes): a file describing the emulated core is mounted over it;
- the command runs with a clean environment (``QEMU_CPU`` picks the core) in ``chroot``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from elsr.errors import ElsrError

SITE_IN_ROOT = "/opt/elsr/site"
WORK_IN_ROOT = "/work"
MOUNT_POINTS = ("proc", "sys", "dev", "tmp", SITE_IN_ROOT.lstrip("/"), WORK_IN_ROOT.lstrip("/"))
# binfmt_misc's match for aarch64 ELF executables (as in QEMU's own qemu-binfmt-conf.sh)
AARCH64_MAGIC = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
AARCH64_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
NO_BINFMT, NO_REGISTER = 97, 98      # the script's exit codes for a binfmt_misc it cannot use

# Run by this machine's Python: enter a new user namespace, tell the parent, wait for the id maps, exec.
USERNS_CHILD = r"""
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:
    sys.exit("elsr-sandbox: unshare(CLONE_NEWUSER) failed: " + os.strerror(ctypes.get_errno()))
ready, mapped = int(sys.argv[1]), int(sys.argv[2])
os.write(ready, b"u")
os.close(ready)
if os.read(mapped, 1) != b"m":
    sys.exit("elsr-sandbox: no uid/gid map")
os.execvp(sys.argv[3], sys.argv[3:])
"""

# Run by bash inside the namespaces: binfmt_misc, the root's mounts, then the command in the root.
SCRIPT = rf"""
set -eu
qemu=$1 root=$2 site=$3 work=$4 cpuinfo=$5 magic=$6 mask=$7
shift 7
mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || exit {NO_BINFMT}
printf '%s' ":elsr-aarch64:M::$magic:$mask:$qemu:F" > /proc/sys/fs/binfmt_misc/register 2>/dev/null || exit {NO_REGISTER}
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/tmp"
mount --bind "$site" "$root{SITE_IN_ROOT}"
mount --bind "$work" "$root{WORK_IN_ROOT}"
if [ -n "$cpuinfo" ]; then mount --bind "$cpuinfo" "$root/proc/cpuinfo"; fi
exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LANG=C.UTF-8 PYTHONPATH={SITE_IN_ROOT} QEMU_CPU="$QEMU_CPU" \
    chroot "$root" "$@"
"""

# QEMU before 8.2: the MIDR of each core for the /proc/cpuinfo we mount (implementer 0x41 is Arm)
MIDR = {"cortex-a35": (0x41, 0xd04), "cortex-a53": (0x41, 0xd03), "cortex-a55": (0x41, 0xd05),
        "cortex-a57": (0x41, 0xd07), "cortex-a72": (0x41, 0xd08), "cortex-a76": (0x41, 0xd0b),
        "neoverse-n1": (0x41, 0xd0c), "cortex-a710": (0x41, 0xd47), "a64fx": (0x46, 0x001)}


def cpuinfo_text(core: str, cpus: int = 2) -> str:
    """A /proc/cpuinfo as an aarch64 kernel writes it, for ``core`` (features come from the auxv anyway)."""
    implementer, part = MIDR.get(core.split(",")[0], (0x00, 0x051))   # "max": QEMU's own MIDR
    block = ("processor\t: {i}\nBogoMIPS\t: 100.00\nFeatures\t: fp asimd cpuid\nCPU implementer\t: 0x{imp:02x}\n"
             "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0x{part:03x}\nCPU revision\t: 0\n\n")
    return "".join(block.format(i=i, imp=implementer, part=part) for i in range(cpus))


@dataclass
class Sandbox:
    qemu: Path                  # a static qemu-aarch64 (no ':' in its path: binfmt_misc's separator)
    root: Path                  # the arm64 root
    site: Path                  # the aarch64 wheels, installed (pip --target)
    work: Path                  # inputs, models and outputs; /work in the root
    fake_cpuinfo: bool = False  # QEMU before 8.2

    def command(self, argv: list[str], cpuinfo: Path | None) -> list[str]:
        return [sys.executable, "-c", USERNS_CHILD, "READY", "MAPPED",
                "unshare", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private",
                "bash", "-c", SCRIPT, "elsr-sandbox", str(self.qemu), str(self.root), str(self.site), str(self.work),
                str(cpuinfo or ""), AARCH64_MAGIC, AARCH64_MASK, *argv]

    def popen(self, argv: list[str], core: str, **kwargs) -> subprocess.Popen:
        """Start ``argv`` (paths inside the root) on the emulated ``core``; the caller reads and waits."""
        cpuinfo = None
        if self.fake_cpuinfo:
            cpuinfo = self.work / f".cpuinfo-{core.replace(',', '_').replace('=', '-')}"
            cpuinfo.write_text(cpuinfo_text(core))
        ready_r, ready_w = os.pipe()
        mapped_r, mapped_w = os.pipe()
        command = self.command(argv, cpuinfo)
        command[3:5] = [str(ready_w), str(mapped_r)]
        try:
            proc = subprocess.Popen(command, pass_fds=(ready_w, mapped_r), env={**os.environ, "QEMU_CPU": core},
                                    **kwargs)
        finally:
            os.close(ready_w)
            os.close(mapped_r)
        try:
            if os.read(ready_r, 1) == b"u":
                for name in ("uid_map", "gid_map"):   # one to one: root is root, files keep their owners
                    Path(f"/proc/{proc.pid}/{name}").write_text("0 0 4294967295\n")
                os.write(mapped_w, b"m")
        finally:
            os.close(ready_r)
            os.close(mapped_w)
        return proc

    def run(self, argv: list[str], core: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        proc = self.popen(argv, core, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        done = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        binfmt_problem(done.returncode)
        return done


def binfmt_problem(returncode: int) -> None:
    """ElsrError when the sandbox could not mount or fill its own binfmt_misc."""
    if returncode == NO_BINFMT:
        raise ElsrError("cannot mount binfmt_misc inside a user namespace",
                        fix="run on Linux 6.7 or later with binfmt_misc (CONFIG_BINFMT_MISC), as root")
    if returncode == NO_REGISTER:
        raise ElsrError("binfmt_misc refused the qemu-aarch64 registration",
                        fix="run on Linux 6.7 or later with binfmt_misc (CONFIG_BINFMT_MISC), as root")
