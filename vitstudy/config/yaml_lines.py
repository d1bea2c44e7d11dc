"""Reading a manifest's YAML, bounded: its file (a regular file of UTF-8 text, at most MAX_BYTES), its data
(safe YAML only: a manifest can never import or run code) and the line of every key path, so that each
problem names the line it is on.

The text is parsed once: composed into a node tree (libyaml's events when PyYAML has it, PyYAML's own
composer over them), which gives both the line index and, through yaml's safe constructor, the data.
The bounds hold while composing, before any value is built: at most MAX_NODES values counting through
aliases (so an alias bomb, a few hundred bytes of nested anchors, is refused at the alias that would pass
the bound, in milliseconds, and nothing downstream can expand anything big), no alias inside its own
anchor, at most MAX_DEPTH levels of nesting, and no key twice in one mapping (YAML would silently keep
the second).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.resolver import Resolver

from vitstudy.config.errors import ManifestError, Problem, dotted, shown

MAX_BYTES = 1 << 20  # a manifest file's size cap (1 MiB); real manifests are a few KB
MAX_NODES = 10_000  # YAML values in a manifest, counted through aliases; real manifests have a few hundred
MAX_DEPTH = 64  # levels of nesting; real manifests have fewer than ten
MAX_NUMBER = 100  # characters of one number (YAML's base-60 integers take quadratic time to build)
_NUMBERS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_MERGE = "tag:yaml.org,2002:merge"  # the `<<` key, which may repeat the keys it merges in
# what YAML refuses in a stream (PyYAML's Reader.NON_PRINTABLE), found here to name its line and column
_UNPRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")

try:  # libyaml's parser (C) when PyYAML was built with it: the events of a large file in milliseconds
    from yaml._yaml import CParser as _Events
except ImportError:  # PyYAML without libyaml: its own reader, scanner and parser
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Events(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, text: str):
            Reader.__init__(self, text)
            Scanner.__init__(self)
            Parser.__init__(self)


def read_file(path: Path) -> str:
    """The text of a manifest file. Anything but a regular file of UTF-8 text of at most MAX_BYTES is a
    ManifestError naming the file and what is wrong; at most MAX_BYTES + 1 bytes are read, and a FIFO or
    a device is never waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except ValueError:  # a NUL byte in the path
        raise _file_error(path, "the path contains a NUL byte; give the path of a manifest file") from None
    except OSError as e:
        raise _file_error(path, f"cannot read: {e.strerror or e}") from None
    try:
        kind = _not_regular(os.fstat(fd).st_mode)
        if kind:
            raise _file_error(path, f"{kind}, not a regular file; a manifest is a YAML file")
        data = _read_at_most(fd, MAX_BYTES + 1)
    except OSError as e:
        raise _file_error(path, f"cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise _file_error(path, f"larger than {MAX_BYTES:,} bytes (1 MiB), the most a manifest may be (real "
                                "ones are a few KB)")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # a UTF-8 byte order mark is allowed
    except UnicodeDecodeError as e:
        utf16 = " (a UTF-16 file? save it as UTF-8)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise _file_error(path, f"not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start}{utf16}; "
                                "a manifest is UTF-8 text", data.count(b"\n", 0, e.start) + 1) from None


def read_yaml(text: str, file: str | Path) -> tuple[Any, LineIndex]:
    """The manifest's data and its line index, from one bounded parse. A syntax error, a control
    character, a repeated key, a value Python cannot build or a document over the bounds is a
    ManifestError naming its line (and key path, where there is one)."""
    if len(text) > MAX_BYTES:
        raise ManifestError(file, [Problem("<file>", f"{len(text):,} characters; a manifest is at most "
                                                     f"{MAX_BYTES:,} bytes (1 MiB)")])
    bad = _UNPRINTABLE.search(text)
    if bad:
        at = bad.start()
        char = bad.group()
        what = "a NUL byte (a binary file?)" if char == "\0" else f"control character U+{ord(char):04X}"
        column = at - text.rfind("\n", 0, at)
        raise ManifestError(file, [Problem("<yaml>", f"{what} at column {column}; a manifest is text",
                                           text.count("\n", 0, at) + 1)])
    loader = _Loader(text)
    root = None
    try:
        root = loader.get_single_node()
        if loader.repeated:
            raise ManifestError(file, loader.repeated)
        return (loader.construct_document(root) if root is not None else None), LineIndex(root)
    except _TooBig as e:
        raise ManifestError(file, [Problem(dotted(e.path) or "<yaml>", e.message, e.line)]) from None
    except ConstructorError as e:  # a value yaml or Python cannot build: at its key path
        mark, msg = e.problem_mark, " ".join(str(e.problem or e).split())
        raise ManifestError(file, [Problem(dotted(_path_at(root, mark)) or "<yaml>", msg,
                                           mark.line + 1 if mark is not None else None)]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        msg = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ManifestError(file, [Problem("<yaml>", f"YAML syntax error: {msg}",
                                           mark.line + 1 if mark is not None else None)]) from None
    finally:
        loader.dispose()


class LineIndex:
    """Maps a key path to its line in the YAML source (1-based), from the composed node tree; a key
    missing from a mapping gives the mapping's line. Where `<<` merged a key in, the mapping's own (last)
    pair wins, as in the data."""

    def __init__(self, root: yaml.Node | None):
        self.root = root

    def line(self, path: tuple) -> int | None:
        node = self.root
        for key in path:
            if isinstance(node, yaml.MappingNode):
                for k, v in reversed(node.value):
                    if k.value == str(key):
                        node = v
                        break
                else:
                    return node.start_mark.line + 1
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
            else:
                break
        return node.start_mark.line + 1 if node is not None else None


# --------------------------------------------------------------------------------------------------
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _not_regular(mode: int) -> str | None:
    """What a file that is not a regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((words for test, words in _KINDS if test(mode)), "a special file")


def _read_at_most(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _file_error(path: Path, message: str, line: int | None = None) -> ManifestError:
    """A problem with the file itself, naming it (quoted and shortened when the name is not plain text)."""
    name = str(path)
    return ManifestError(name if name.isprintable() and len(name) <= 1000 else shown(name),
                         [Problem("<file>", message, line)])


def _path_at(root: yaml.Node | None, mark: Any) -> tuple:
    """The key path of the node that starts at `mark` (where a constructor error points), or ()."""
    todo, seen = [(root, ())], set()
    while todo:
        node, path = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if (node.start_mark.line, node.start_mark.column) == (mark.line, mark.column):
            return path
        if isinstance(node, yaml.SequenceNode):
            todo += [(item, (*path, i)) for i, item in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            todo += [(value, (*path, _key(key))) for key, value in node.value]
    return ()


def _key(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "<key>"


class _Resolver(Resolver):
    """YAML 1.1's implicit types plus YAML 1.2's floats: `1e-3` and `5E4` are numbers, as a researcher
    means them, not the text YAML 1.1 makes of an exponent without a dot."""


_EXPONENT = re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$")  # 1e-3, 5E4, -2.5e+3
_Resolver.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT, list("-+0123456789"))


class _TooBig(Exception):
    """A document over the bounds: where (key path, line) and why."""

    def __init__(self, path: list, line: int, message: str):
        self.path, self.line, self.message = tuple(path), line, message


class _Loader(Composer, _Events, SafeConstructor, _Resolver):
    """yaml's safe loader whose composer counts as it goes: every value composed adds 1 and every alias the
    size of its anchor's value, so the running count is the document's size with aliases expanded. It
    also keeps the key path being composed (for messages) and collects repeated keys."""

    def __init__(self, text: str):
        _Events.__init__(self, text)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        _Resolver.__init__(self)
        self.size: dict[int, int] = {}  # id(node) -> its size counting through aliases, once composed
        self.count = 0  # the size of what is composed so far
        self.path: list = []
        self.repeated: list[Problem] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        step = isinstance(parent, yaml.SequenceNode) or isinstance(index, yaml.Node)  # an item or a value
        if step:
            self.path.append(index if isinstance(index, int) else _key(index))
        start = self.peek_event().start_mark
        if len(self.path) > MAX_DEPTH:
            raise _TooBig(self.path[:2], start.line + 1, f"nested more than {MAX_DEPTH} levels deep; a "
                                                         "manifest is a few levels of mappings and lists")
        alias = self.check_event(AliasEvent)
        node = super().compose_node(parent, index)
        if alias:
            self._count_alias(node, start)
        else:
            self._count(node)
        if step:
            self.path.pop()
        return node

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple, yaml.Node] = {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE:
                first = seen.setdefault((key.tag, key.value), key)
                if first is not key:
                    lines = first.start_mark.line + 1, key.start_mark.line + 1
                    self.repeated.append(Problem(
                        dotted((*self.path, key.value)), f"the key {shown(key.value)} is given twice in one "
                        f"mapping (lines {lines[0]} and {lines[1]}); give it once (YAML would keep the "
                        "second and drop the first without a word)", lines[1]))
        return node

    def _count(self, node: yaml.Node) -> None:
        """A value composed: 1 for itself; its size is 1 plus its items' (counted already)."""
        if isinstance(node, yaml.SequenceNode):
            items = node.value
        elif isinstance(node, yaml.MappingNode):
            items = [n for pair in node.value for n in pair]
        else:
            items = []
        self.size[id(node)] = 1 + sum(self.size[id(n)] for n in items)
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig(self.path, node.start_mark.line + 1, f"the manifest has more than {MAX_NODES:,} "
                                                               "YAML values; a manifest has a few hundred")

    def _count_alias(self, node: yaml.Node, start: Any) -> None:
        """An alias: its anchor's value counted again, whole; an anchor still being composed (no size yet)
        makes a recursive alias."""
        anchor_line = node.start_mark.line + 1
        if id(node) not in self.size:
            raise _TooBig(self.path, start.line + 1, f"a recursive alias: it is inside its own anchor (line "
                                                     f"{anchor_line}); an alias repeats a value defined "
                                                     "before it")
        self.count += self.size[id(node)]
        if self.count > MAX_NODES:
            raise _TooBig(self.path, start.line + 1,
                          f"this alias repeats {self.size[id(node)]:,} YAML values (its anchor is at line "
                          f"{anchor_line}), which makes the manifest more than {MAX_NODES:,} values counted "
                          "through aliases (an alias bomb?); a manifest has a few hundred")

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A value, or a ConstructorError at its line for a number written with more than MAX_NUMBER
        characters and for what Python refuses to build (an integer of more than 4300 digits, a date
        that does not exist)."""
        if node.tag in _NUMBERS and len(node.value) > MAX_NUMBER:
            too_long = f"a number of {len(node.value):,} characters; a number has at most {MAX_NUMBER}"
            raise ConstructorError(None, None, too_long, node.start_mark)
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError, TypeError) as e:
            value = shown(node.value) if isinstance(node.value, str) else "a value"
            raise ConstructorError(None, None, f"{value} cannot be read: {e}", node.start_mark) from None
