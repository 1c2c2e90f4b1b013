"""Shared fixtures: where the real test images live, and small generated images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The shared data folder: $ELSR_DATA, else ../shared/data beside the repository."""
    return Path(os.environ.get("ELSR_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real-image data set; skips the test with a reason when it is absent."""
    path = shared_data_dir()
    if not (path / "Set5" / "HR").is_dir():
        pytest.skip(f"real test images not found at {path} (set ELSR_DATA to the shared data folder)")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
