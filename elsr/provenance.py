"""Where an artifact came from: the commit and the command that made it."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from elsr.version import __version__


def git_commit() -> str:
    """The repository commit of this source tree, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])


def provenance() -> dict[str, str]:
    return {"elsr_version": __version__, "commit": git_commit(), "command": command_line()}
