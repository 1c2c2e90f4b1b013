"""The README's phone snippets are the files in tests/snippets, and those compile against the APIs they call."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

SNIPPETS = REPO / "tests" / "snippets"
LANGUAGES = {"kotlin": "android/*.kt", "objc": "ios/*.m"}


def readme_blocks(language: str) -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_every_readme_snippet_is_a_checked_file(language):
    files = {path.name: path.read_text(encoding="utf-8") for path in SNIPPETS.glob(LANGUAGES[language])}
    blocks = readme_blocks(language)
    assert blocks, f"no {language} snippet in README.md"
    for block in blocks:
        assert any(block.strip() in text for text in files.values()), \
            f"a {language} snippet of README.md is not in tests/snippets: {block[:80]!r}"


def test_snippets_compile():
    tools = ["kotlinc", "javac", "clang", "gnustep-config", "gcc"]
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install kotlin default-jdk-headless clang "
                    "libgnustep-base-dev): tests/snippets/check.sh compiles the snippets where they are")
    done = subprocess.run(["bash", str(SNIPPETS / "check.sh")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
