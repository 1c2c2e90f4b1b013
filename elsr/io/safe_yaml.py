"""Reading a YAML file someone else may have written (a training schedule): plain data only, and small.

PyYAML's safe loader already builds no objects, but a YAML document can still hurt whoever reads it: aliases
that refer to lists of aliases ("billion laughs") make a file of a few hundred bytes stand for billions of
values, and any code that walks or prints the result (an error message, a digest) then hangs or runs out of
memory; an alias inside its own anchor makes a loop; deep nesting overflows the parser's recursion. So the
document is composed first, measured as it would be expanded (each shared node counted where it is used,
without expanding it), and refused past MAX_NODES values, on a loop, or past MAX_DEPTH levels; a tag other than
YAML's plain ones (``!!python/object``, ``!include``, any ``!custom``) is refused by name, before anything is
constructed.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from elsr.errors import ElsrError

MAX_BYTES = 1 << 20      # a schedule is a few hundred bytes
MAX_NODES = 100_000      # values, counting every use of an alias as the values it stands for
MAX_DEPTH = 50           # nesting of lists and mappings
PLAIN_TAGS = {f"tag:yaml.org,2002:{name}"   # the core schema, merge keys (<<: *defaults), dates as plain text
              for name in ("null", "bool", "int", "float", "str", "seq", "map", "merge", "timestamp")}


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_node(node: yaml.Node, path: Path) -> None:
    """Refuse a tag that is not plain data, a loop, nesting past MAX_DEPTH and a size past MAX_NODES, walking each
    distinct node once (without recursion, so no depth can overflow the stack)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(node, 1, False)]
    open_nodes: set[int] = set()
    while stack:
        current, depth, done = stack.pop()
        key = id(current)
        if done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(current))
            if sizes[key] > MAX_NODES:
                raise ElsrError(f"the YAML stands for more than {MAX_NODES:,} values (aliases that repeat "
                                "aliases): refused unread", path=path, fix="write the schedule out plainly")
            continue
        if key in open_nodes:
            raise ElsrError("the YAML refers to itself (an alias inside its own anchor)", path=path,
                            fix="write the schedule out plainly")
        if key in sizes:
            continue
        if current.tag not in PLAIN_TAGS:
            raise ElsrError(f"YAML tag {current.tag!r} at line {current.start_mark.line + 1} is refused: only plain "
                            "values, lists and mappings are read", path=path, fix="remove the tag")
        if depth > MAX_DEPTH:
            raise ElsrError(f"the YAML nests deeper than {MAX_DEPTH} levels (line {current.start_mark.line + 1})",
                            path=path, fix="write the schedule out plainly")
        open_nodes.add(key)
        stack.append((current, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(current))


def _invalid(exc: yaml.YAMLError, path: Path) -> ElsrError:
    mark = getattr(exc, "problem_mark", None)
    line = f" at line {mark.line + 1}" if mark else ""
    return ElsrError(f"invalid YAML{line}: {getattr(exc, 'problem', None) or exc}", path=path)


def load_yaml(path: str | Path):
    """The plain data (dicts, lists, strings, numbers, booleans, None) of a YAML file, checked as the module says;
    None for an empty file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ElsrError(f"file of {size:,} bytes, too large for a YAML schedule (at most {MAX_BYTES:,})",
                            path=path, fix="pass the schedule's .yaml file")
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ElsrError("not a text (YAML) file", path=path, fix="pass a .yaml schedule") from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_node(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _invalid(exc, path) from exc
    except RecursionError as exc:   # the parser recurses into nesting it has not measured yet
        raise ElsrError(f"the YAML nests too deeply to read (more than {MAX_DEPTH} levels)", path=path,
                        fix="write the schedule out plainly") from exc
    finally:
        loader.dispose()
