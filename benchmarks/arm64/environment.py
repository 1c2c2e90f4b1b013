"""Setting up the ARM64 check, once, in a cache folder outside the repository.

What it needs, and where each piece comes from (nothing else is downloaded, and nothing at all on a
cached rerun):

- Debian tools on this machine (``mmdebstrap``), by ``apt-get install`` as the machine is configured;
- a static ``qemu-aarch64``: the ``qemu-user(-static)`` package of one Debian suite (``QEMU_SUITE``),
  fetched by apt from the machine's own Debian mirror (read from its apt sources at run time) into
  a private apt state in the cache, and only the one binary kept; the machine's packages are untouched;
- an arm64 root (``mmdebstrap --variant=extract``: Debian's ``python3`` and ``libstdc++6`` with their
  dependencies, unpacked without running anything, so no emulation is needed to build it);
- aarch64 wheels of numpy and of each runtime's packages, of exactly the versions installed here,
  by this machine's pip (``--platform`` / ``--target``: pip never runs under emulation).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from elsr.benchmarks.arm64.sandbox import MOUNT_POINTS
from elsr.errors import ElsrError
from elsr.io.files import write_bytes, write_text


DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
FILESYSTEMS = Path("/proc/filesystems")
# QEMU 11.1 (trixie-backports) emulates SME2 on QEMU_CPU=max; 10.0 (bookworm-backports) SME only; 7.2 (bookworm)
# computes SME's SMOPA wrongly (smecheck).
QEMU_SUITE = "trixie-backports"
QEMU_PACKAGES = (("qemu-user-static", "usr/bin/qemu-aarch64-static"),   # older Debian QEMU: the static build
                 ("qemu-user", "usr/bin/qemu-aarch64"))                 # newer: static already (the other transitional)
ROOT_PACKAGES = ("python3", "libstdc++6")
HOST_TOOLS = {"mmdebstrap": "mmdebstrap", "dpkg-deb": "dpkg", "apt-get": "apt", "unshare": "util-linux",
              "chroot": "coreutils", "bash": "bash"}
MIN_KERNEL = (6, 7)   # binfmt_misc inside a user namespace
NETWORK_FIX = "the first set-up needs the network (Debian mirror and PyPI as this machine is configured)"


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "elsr" / "arm64"


def run(command: list[str], what: str, fix: str, text: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a set-up command; ElsrError with its last line of output when it fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=text, **kwargs)
    except FileNotFoundError as exc:
        raise ElsrError(f"{what}: {command[0]} is not installed", fix=fix) from exc
    if done.returncode != 0:
        output = done.stderr + done.stdout
        lines = [line for line in (output if text else output.decode(errors="replace")).splitlines() if line.strip()]
        raise ElsrError(f"{what} failed: {lines[-1] if lines else f'exit status {done.returncode}'}", fix=fix)
    return done


# ------------------------------------------------------------------------------------------ machine


@dataclass(frozen=True)
class Mirror:
    uri: str            # e.g. the machine's Debian mirror
    codename: str       # the release this machine runs (bookworm, trixie, ...)
    signed_by: str


def debian_mirror(path: Path | None = None) -> Mirror:
    """The machine's Debian mirror and release, from its deb822 apt sources."""
    path = path or DEBIAN_SOURCES
    if not path.is_file():
        raise ElsrError("no Debian apt sources", path=path, fix="run on Debian (the mirror is read from this file)")
    for stanza in re.split(r"\n\s*\n", path.read_text()):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.strip() and not line.lstrip().startswith("#") and ":" in line:
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
        suites = fields.get("suites", "").split()
        releases = [s for s in suites if "-" not in s and "/" not in s]
        if "deb" in fields.get("types", "").split() and fields.get("uris") and releases:
            return Mirror(fields["uris"].split()[0], releases[0],
                          fields.get("signed-by", "/usr/share/keyrings/debian-archive-keyring.gpg"))
    raise ElsrError("no Debian release with a 'deb' line found", path=path, fix="check the machine's apt sources")


def kernel_version(release: str) -> tuple[int, int]:
    found = re.match(r"(\d+)\.(\d+)", release)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def preflight() -> None:
    """Refuse, in one line each, what makes the set-up impossible: not root, no binfmt_misc, an old kernel."""
    if os.geteuid() != 0:
        raise ElsrError("the ARM64 check needs root (Debian tools, an arm64 root file system, private mounts)",
                        fix="run it as root, e.g. with sudo")
    try:
        has_binfmt = "binfmt_misc" in FILESYSTEMS.read_text()
    except OSError:
        has_binfmt = False
    if not has_binfmt:
        raise ElsrError("this kernel has no binfmt_misc, which runs arm64 programs through QEMU",
                        fix="load it (modprobe binfmt_misc) or use a kernel with CONFIG_BINFMT_MISC")
    release = os.uname().release
    if kernel_version(release) < MIN_KERNEL:
        raise ElsrError(f"Linux {release} cannot give a user namespace its own binfmt_misc",
                        fix=f"run on Linux {'.'.join(map(str, MIN_KERNEL))} or later")


def ensure_host_tools(emit: Callable[[str], None]) -> None:
    """``mmdebstrap`` and the base tools; ``apt-get install`` of what is missing."""
    missing = sorted({package for tool, package in HOST_TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    emit(f"set-up: apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], "apt-get update", NETWORK_FIX, env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], f"apt-get install {' '.join(missing)}",
        NETWORK_FIX, env=env)


def host_versions(distributions: Iterable[str]) -> dict[str, str]:
    """The version of each distribution installed here (the aarch64 wheels are pinned to them)."""
    versions = {}
    for name in distributions:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise ElsrError(f"{name} is not installed here, so there is no version to pin its aarch64 wheel to",
                            fix="pip install 'elsr[tflite]'" if name == "ai-edge-litert" else f"pip install {name}") \
                from exc
    return versions


# --------------------------------------------------------------------------------------------- QEMU


@dataclass(frozen=True)
class Qemu:
    path: Path
    version: str          # QEMU's own, e.g. 11.1.3
    package: str          # the Debian package and version it came from
    suite: str

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(v) for v in re.findall(r"\d+", self.version)[:3])

    @property
    def emulates_cpuinfo(self) -> bool:
        """QEMU 8.2 and later write an aarch64 /proc/cpuinfo for the emulated core."""
        return self.version_tuple >= (8, 2)

    def cores(self) -> list[str]:
        """The -cpu values it knows (``-cpu help`` lists them, then exits with status 1)."""
        listing = subprocess.run([str(self.path), "-cpu", "help"], capture_output=True, text=True).stdout
        return [line.split()[0] for line in listing.splitlines() if line.startswith(" ") and line.strip()]


class PrivateApt:
    """apt with its own sources (one suite of the machine's mirror), lists and status, inside the cache."""

    def __init__(self, folder: Path, mirror: Mirror, suite: str) -> None:
        self.folder, self.mirror, self.suite = folder, mirror, suite
        for sub in ("sources", "preferences", "lists/partial", "cache/archives/partial", "debs"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        write_text(folder / "sources" / "elsr.sources", f"Types: deb\nURIs: {mirror.uri}\nSuites: {suite}\n"
                                                          f"Components: main\nSigned-By: {mirror.signed_by}\n")
        write_text(folder / "status", "")

    def options(self) -> list[str]:
        f = self.folder
        settings = {"Dir::Etc::SourceList": "/dev/null", "Dir::Etc::SourceParts": f / "sources",
                    "Dir::Etc::Preferences": "/dev/null", "Dir::Etc::PreferencesParts": f / "preferences",
                    "Dir::State::Lists": f / "lists", "Dir::State::status": f / "status", "Dir::Cache": f / "cache",
                    "APT::Sandbox::User": "root"}
        return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]

    def update(self) -> None:
        what = f"apt-get update of {self.mirror.uri} {self.suite}"
        done = run(["apt-get", *self.options(), "update", "-q"], what, NETWORK_FIX)
        if not any((self.folder / "lists").glob("*_Packages*")):   # apt-get update exits 0 when a fetch fails
            failed = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith(("W:", "E:", "Err"))]
            raise ElsrError(f"{what} failed: {failed[0] if failed else 'no package list'}", fix=NETWORK_FIX)

    def candidate(self, package: str) -> str | None:
        done = run(["apt-cache", *self.options(), "policy", package], f"apt-cache policy {package}", NETWORK_FIX)
        found = re.search(r"Candidate:\s*(\S+)", done.stdout)
        return found.group(1) if found and found.group(1) != "(none)" else None

    def download(self, package: str, version: str) -> Path:
        debs = self.folder / "debs"
        for old in debs.glob("*.deb"):
            old.unlink()
        run(["apt-get", *self.options(), "download", "-q", f"{package}={version}"], f"apt-get download {package}",
            NETWORK_FIX, cwd=debs)
        (deb,) = debs.glob("*.deb")
        return deb


def deb_member(deb: Path, member: str) -> bytes | None:
    """One file of a .deb's data (``dpkg-deb --fsys-tarfile``), or None when it has no such file."""
    data = run(["dpkg-deb", "--fsys-tarfile", str(deb)], f"dpkg-deb {deb.name}", "delete the cache folder and rerun",
               text=False).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for name in (member, f"./{member}"):
            try:
                entry = tar.extractfile(name)
            except KeyError:
                continue
            return entry.read() if entry else None
    return None


def is_static_elf(data: bytes) -> bool:
    """A 64-bit ELF without a program interpreter (PT_INTERP): runs inside any root."""
    if data[:5] != b"\x7fELF\x02":
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != 3 for i in range(phnum))


def ensure_qemu(cache: Path, mirror: Mirror, suite: str, emit: Callable[[str], None]) -> Qemu:
    """The static qemu-aarch64 of ``suite``: from the cache, else fetched from the machine's mirror."""
    index = cache / "qemu" / f"{suite}.json"
    if index.is_file():
        known = json.loads(index.read_text())
        if Path(known["path"]).is_file():
            return Qemu(Path(known["path"]), known["version"], known["package"], suite)
    emit(f"set-up: qemu-aarch64 from {mirror.uri} {suite}")
    apt = PrivateApt(cache / "apt" / suite, mirror, suite)
    apt.update()
    for package, member in QEMU_PACKAGES:
        version = apt.candidate(package)
        if version is None:
            continue
        deb = apt.download(package, version)
        binary = deb_member(deb, member)
        deb.unlink()
        if binary is None or not is_static_elf(binary):
            continue
        folder = cache / "qemu" / re.sub(r"[^A-Za-z0-9.+-]", "_", f"{package}_{version}")
        path = folder / "qemu-aarch64"
        write_bytes(path, binary)
        path.chmod(0o755)
        found = re.search(r"version (\S+)", run([str(path), "--version"], "qemu-aarch64 --version",
                                                "delete the cache folder and rerun").stdout)
        qemu = Qemu(path, found.group(1) if found else "unknown", f"{package} {version}", suite)
        write_text(index, json.dumps({"path": str(path), "version": qemu.version, "package": qemu.package}))
        return qemu
    raise ElsrError(f"{mirror.uri} {suite} has no static qemu-aarch64 ({' or '.join(p for p, _ in QEMU_PACKAGES)})",
                    fix="choose another suite with --qemu-suite (e.g. bookworm-backports, trixie, sid)")


# --------------------------------------------------------------------------------------------- root


def ensure_root(cache: Path, mirror: Mirror, emit: Callable[[str], None]) -> Path:
    """The arm64 root of the machine's Debian release: unpacked once by mmdebstrap, then renamed into place."""
    root = cache / f"root-{mirror.codename}-arm64"
    if (root / "usr" / "bin" / "python3").exists():
        return root
    emit(f"set-up: arm64 {mirror.codename} root ({', '.join(ROOT_PACKAGES)}) from {mirror.uri}")
    partial = cache / f".{root.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    # mmdebstrap in a private mount namespace: whatever it mounts stays there
    run(["unshare", "--mount", "--propagation", "private", "mmdebstrap", "--quiet", "--arch=arm64",
         "--variant=extract", "--mode=root", f"--include={','.join(ROOT_PACKAGES)}", "--skip=check/qemu",
         mirror.codename, str(partial), mirror.uri], "mmdebstrap", NETWORK_FIX)
    for point in MOUNT_POINTS:
        (partial / point).mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    return root


def root_python(root: Path) -> tuple[int, int]:
    """The (major, minor) of the root's python3."""
    target = os.readlink(root / "usr" / "bin" / "python3")
    found = re.fullmatch(r"python(\d+)\.(\d+)", Path(target).name)
    if not found:
        raise ElsrError(f"cannot tell the Python version of the arm64 root (python3 -> {target})",
                        path=root, fix="delete the cache folder and rerun")
    return int(found.group(1)), int(found.group(2))


def root_glibc(root: Path) -> tuple[int, int]:
    """The (major, minor) of the root's C library (which manylinux wheels it runs)."""
    libc = [path for path in (root / "lib" / "aarch64-linux-gnu" / "libc.so.6",
                              root / "usr" / "lib" / "aarch64-linux-gnu" / "libc.so.6") if path.is_file()]
    found = libc and re.search(rb"GNU C Library [^\n]*?version (\d+)\.(\d+)", libc[0].read_bytes())
    if not found:
        raise ElsrError("cannot tell the C library version of the arm64 root", path=root,
                        fix="delete the cache folder and rerun")
    return int(found.group(1)), int(found.group(2))


# ------------------------------------------------------------------------------------------- wheels


def ensure_site(cache: Path, versions: dict[str, str], python: tuple[int, int], glibc: tuple[int, int],
                emit: Callable[[str], None]) -> Path:
    """The aarch64 wheels of ``versions`` for the root's Python, installed into a folder of the cache."""
    requirements = [f"{name}=={version}" for name, version in sorted(versions.items())]
    tag = f"cp{python[0]}{python[1]}"
    key = hashlib.sha256(json.dumps([requirements, tag, glibc]).encode()).hexdigest()[:12]
    site = cache / "site" / f"{tag}-{key}"
    if (site / ".complete").is_file():
        return site
    emit(f"set-up: aarch64 wheels {' '.join(requirements)} ({tag}, glibc {glibc[0]}.{glibc[1]})")
    partial = site.with_name(f".{site.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    platforms = ["manylinux2014_aarch64", *(f"manylinux_2_{minor}_aarch64" for minor in range(17, glibc[1] + 1))]
    run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
         "--target", str(partial), "--only-binary=:all:", "--implementation", "cp", "--python-version",
         f"{python[0]}.{python[1]}", "--abi", tag, *(arg for p in platforms for arg in ("--platform", p)),
         *requirements], "pip install of the aarch64 wheels", NETWORK_FIX)
    shutil.rmtree(site, ignore_errors=True)
    partial.rename(site)
    write_text(site / ".complete", "\n".join(requirements) + "\n")
    return site
