import os

import pytest

from elsr.errors import ElsrError
from elsr.io.files import atomic_path, kept_sections, write_section, write_text


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_text(target, "old")
    write_text(target, "new")
    assert target.read_text() == "new"
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_unwritable_destination_is_a_one_line_error(tmp_path):
    (tmp_path / "file.txt").write_text("x")  # a file where a folder should be: no write can happen there
    with pytest.raises(ElsrError, match="cannot write here"):
        write_text(tmp_path / "file.txt" / "x.txt", "x")


def test_a_markdown_section_is_replaced_or_appended_and_the_rest_kept(tmp_path):
    path = tmp_path / "doc.md"
    write_section(path, "## B", "## B\n\nfirst\n")
    assert path.read_text() == "## B\n\nfirst\n"
    path.write_text("# Top\n\nintro\n\n## A\n\na\n\n## B\n\nold\n### B.1\n\nold too\n\n## C\n\nc\n")
    write_section(path, "## B", "## B\n\nnew\n")
    assert path.read_text() == "# Top\n\nintro\n\n## A\n\na\n\n## B\n\nnew\n\n## C\n\nc\n"
    write_section(path, "## D", "## D\n\nd")
    assert path.read_text().endswith("## C\n\nc\n\n## D\n\nd\n")
    assert kept_sections(path).startswith("## A\n") and kept_sections(tmp_path / "none.md") == ""
