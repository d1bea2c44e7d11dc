"""Reading a manifest's YAML: its data (`yaml.safe_load`: a manifest can never import or run code) and
the line of every key path, so that each problem names the line it is on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vitstudy.config.errors import ManifestError, Problem


def read_yaml(text: str, file: str | Path) -> tuple[Any, LineIndex]:
    """The manifest's data and its line index; a syntax error is a ManifestError with its line."""
    try:
        return yaml.safe_load(text), LineIndex(yaml.compose(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        msg = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ManifestError(file, [Problem("<yaml>", f"YAML syntax error: {msg}", line)]) from None


class LineIndex:
    """Maps a key path to its line in the YAML source (1-based), from the composed node tree; a key
    missing from a mapping gives the mapping's line."""

    def __init__(self, root: yaml.Node | None):
        self.root = root

    def line(self, path: tuple) -> int | None:
        node = self.root
        for key in path:
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
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
