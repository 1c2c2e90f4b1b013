"""One installed name: the wheel holds the package ``elsr`` alone, ``export/`` and ``benchmarks/`` are
``elsr.export`` and ``elsr.benchmarks``, and nothing is importable under their folder names."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from tests.conftest import REPO

SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def package_folders() -> set[str]:
    """Every package (a folder with __init__.py) under the folders of the package-dir mapping."""
    found = set()
    for package, folder in SETUPTOOLS["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((package, *parts)))
    return found


def test_every_package_folder_is_listed():
    assert set(SETUPTOOLS["packages"]) == package_folders()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """``pip wheel --no-deps .`` of a copy of the project's files (the build leaves its build/ folder there)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for folder in SETUPTOOLS["package-dir"].values():
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                   check=True, capture_output=True)
    (path,) = out.glob("elsr-*.whl")
    return path


def test_the_wheel_holds_one_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")} == {"elsr"}
    sources = {f"{package.replace('.', '/')}/{path.relative_to(REPO / folder)}"
               for package, folder in SETUPTOOLS["package-dir"].items()
               for path in (REPO / folder).rglob("*.py")}
    missing = sources - set(names)
    assert not missing, missing
    assert "elsr/train/schedules/quick.yaml" in names and "elsr/pretrained/elsr_x4_int8.onnx" in names


def run_elsewhere(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """``python args...`` from a folder outside the repository, with nothing of it on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_benchmarks_run_from_any_folder_and_the_old_names_are_gone(tmp_path):
    for module in ("elsr.benchmarks", "elsr.benchmarks.large_image", "elsr.benchmarks.data_loading",
                   "elsr.benchmarks.video", "elsr.benchmarks.pte_profile"):
        done = run_elsewhere(tmp_path, "-m", module, "--help")
        assert done.returncode == 0 and done.stdout.startswith(f"usage: python -m {module}"), done.stderr
    for name in ("export", "benchmarks"):
        done = run_elsewhere(tmp_path, "-c", f"import {name}")
        assert done.returncode == 1 and f"No module named '{name}'" in done.stderr


def test_importing_elsr_loads_no_framework(tmp_path):
    """The public API is imported on first use: `import elsr` (and the memory benchmarks' command lines) stay light."""
    code = ("import sys, elsr, elsr.cli.large_image, elsr.cli.data_loading; "
            "print(sorted(m for m in ('torch', 'cv2', 'onnx', 'onnxruntime') if m in sys.modules))")
    done = run_elsewhere(tmp_path, "-c", code)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
