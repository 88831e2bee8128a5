"""Reads YAML safely (duplicate keys rejected, dates kept as strings) and remembers each node's line.

File reads only; knows nothing of manifests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from runner.errors import Diagnostic, error

PathKey = tuple[str | int, ...]

# A manifest is small: more nodes or characters than this, counting what aliases repeat, is an
# alias bomb.
MAX_NODES = 100_000
MAX_CHARS = 10_000_000
_PLAIN_TAGS = frozenset({
    "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq"})


# libyaml's parser when PyYAML has it (much faster on a repository of manifests), same semantics.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """SafeLoader without the timestamp resolver and with duplicate-key detection."""

    duplicate_keys: list[tuple[str, int]]


# Copy the resolver table so removing timestamps does not change PyYAML's global SafeLoader.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


_MERGE = "tag:yaml.org,2002:merge"


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE:  # `<<: *defaults`: merged keys may be overridden, not dupes
            continue
        key = loader.construct_object(key_node, deep=True)
        # `true:` and `1:` are one key to Python (True == 1) but two as written: the check for
        # keys that are not text names both, not a duplicate.
        typed = (type(key).__name__, key)
        if typed in seen:
            loader.duplicate_keys.append((str(key), key_node.start_mark.line + 1))
        seen.add(typed)
    return yaml.constructor.SafeConstructor.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document with the 1-based line of every node, keyed by its path."""

    file: str
    index: int  # 0-based position in the file's `---` stream
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)
    # Mapping keys YAML read as something else than text (`true:`, `1:`): (path, as written, kind)
    odd_keys: tuple[tuple[PathKey, str, str], ...] = ()

    def line_of(self, path: PathKey) -> int:
        """Line of the deepest node of `path` that exists (a missing key points at its parent)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return 1


_KINDS = {"tag:yaml.org,2002:bool": "a boolean", "tag:yaml.org,2002:int": "a number",
          "tag:yaml.org,2002:float": "a number", "tag:yaml.org,2002:null": "null"}


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int],
          odd: list[tuple[PathKey, str, str]], seen: set[int] | None = None) -> None:
    """Lines by path. A node an alias repeats is walked once: its copies keep the alias's line."""
    seen = set() if seen is None else seen
    lines[path] = node.start_mark.line + 1
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            _walk(value_node, (*path, key), lines, odd, seen)
            lines[(*path, key)] = key_node.start_mark.line + 1
            if key_node.tag in _KINDS:
                odd.append(((*path, key), key, _KINDS[key_node.tag]))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines, odd, seen)


def _graph_problems(root: yaml.Node, file: str) -> list[Diagnostic]:
    """Before anything is built: an alias that contains itself, a document that aliases expand
    past MAX_NODES, or a tag that is not plain data (!!binary, !!set, !!python/...)."""
    sizes: dict[int, int] = {}
    chars: dict[int, int] = {}
    on_path: set[int] = set()

    def length(node: yaml.Node) -> int:
        """Characters the node stands for, aliases repeated (computed with size())."""
        return chars.get(id(node), 0)

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in on_path:
            raise _Refused("a YAML alias refers to the node that contains it", node,
                           "an anchor cannot be used inside itself; write the value out")
        if node.tag not in _PLAIN_TAGS and not node.tag.startswith("tag:yaml.org,2002:merge"):
            raise _Refused(f"YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not "
                           "allowed in batchrun files", node,
                           "use plain text, numbers, lists and mappings; remove the tag")
        on_path.add(key)
        total, text = 1, len(node.value) if isinstance(node, yaml.ScalarNode) else 0
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        for child in children:
            total += size(child)
            text += length(child)
        on_path.discard(key)
        if total > MAX_NODES or text > MAX_CHARS:
            raise _Refused(f"the document expands to more than {MAX_NODES:,} values or "
                           f"{MAX_CHARS:,} characters through YAML aliases (an alias bomb?)", node,
                           "write the values out, or use fewer anchors and aliases")
        sizes[key], chars[key] = total, text
        return total

    try:
        size(root)
    except _Refused as exc:
        return [error(exc.message, file=file, line=exc.node.start_mark.line + 1, hint=exc.hint)]
    except RecursionError:
        return [error("the document nests too deeply", file=file,
                      line=root.start_mark.line + 1)]
    return []


class _Refused(Exception):
    def __init__(self, message: str, node: yaml.Node, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.hint = hint


def load_documents(text: str, file: str) -> tuple[list[Document], list[Diagnostic]]:
    """Parse every document in `text`; return the good ones and a diagnostic per problem."""
    docs: list[Document] = []
    problems: list[Diagnostic] = []
    loader = _Loader(text)
    loader.duplicate_keys = []
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # an empty document between separators
                index += 1
                continue
            loader.duplicate_keys = []
            refused = _graph_problems(node, file)
            if refused:
                problems.extend(refused)
                index += 1
                continue
            data = loader.construct_document(node)
            if loader.duplicate_keys:
                problems.extend(
                    error(
                        f'duplicate key "{key}"',
                        file=file,
                        line=line,
                        hint="each key may appear once in a mapping; remove or merge the copies",
                    )
                    for key, line in loader.duplicate_keys
                )
            else:
                lines: dict[PathKey, int] = {}
                odd: list[tuple[PathKey, str, str]] = []
                _walk(node, (), lines, odd)
                docs.append(Document(file, index, data, lines, tuple(odd)))
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problems.append(
            error(
                f"YAML syntax error: {exc.problem or exc.context}",
                file=file,
                line=(mark.line + 1) if mark else None,
                hint="check indentation and quoting on this line and the one before it",
            )
        )
    except yaml.YAMLError as exc:
        problems.append(error(f"YAML error: {exc}", file=file))
    except RecursionError:
        problems.append(error("the YAML nests too deeply", file=file,
                              hint="a manifest needs a few levels of nesting, not hundreds"))
    finally:
        loader.dispose()
    return docs, problems


def dotted(path: PathKey) -> str:
    """("spec", "examples", 2, "user") -> "spec.examples[2].user"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out
