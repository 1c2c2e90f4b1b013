import os

import pytest

from elsr.errors import ElsrError
from elsr.io.files import atomic_path, write_section, write_text


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


def test_write_section_replaces_its_own_part_and_keeps_the_rest(tmp_path):
    path = tmp_path / "report.md"
    write_section(path, "a", "first A", "# Title")
    write_section(path, "b", "first B", "# Title")
    write_section(path, "a", "second A\nwith two lines", "# Title")
    text = path.read_text()
    assert text.startswith("# Title\n") and "first A" not in text and "second A\nwith two lines" in text
    assert text.index("second A") < text.index("first B") and text.count("<!-- begin a:") == 1
    assert not list(tmp_path.glob(".*.tmp"))
