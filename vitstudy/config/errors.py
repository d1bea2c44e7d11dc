"""What is wrong with a manifest: every problem at once, each naming its file, line and dotted key path.

The parsing functions of the manifest layer report into one `Problems` collector (its `bad(path,
message)`), so one reading of a manifest lists everything wrong with it; `ManifestError` renders the
list. A problem says what would be valid (`explain` turns pydantic's errors into such sentences).
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from vitstudy.registry import unknown_name


@dataclass(frozen=True)
class Problem:
    path: str  # dotted key path in the manifest, e.g. "grid.model.head[1]"
    message: str
    line: int | None = None
    file: str | None = None  # set when the problem is in an included manifest


class ManifestError(Exception):
    """Everything wrong with one manifest, reported at once."""

    def __init__(self, file: str | Path, problems: list[Problem]):
        self.file, self.problems = str(file), problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.file}: {len(self.problems)} problem(s); nothing was run"]
        for p in self.problems:
            file = p.file or self.file
            where = f"{file}:{p.line}" if p.line else file
            lines.append(f"  {where}: {p.path}: {p.message}")
        return "\n".join(lines)


class CellError(Exception):
    """The problems of one cell's spec, as (YAML key path, message) pairs."""

    def __init__(self, problems: list[tuple[tuple, str]]):
        self.problems = problems


class Problems:
    """The problems found so far in one manifest; `line(path)` is the YAML line of a key path."""

    def __init__(self, file: str | Path, line: Callable[[tuple], int | None]):
        self.file, self.line, self.found = file, line, []

    def bad(self, path: tuple, message: str) -> None:
        """Report one problem at a key path (each once)."""
        problem = Problem(dotted(path), message, self.line(path))
        if problem not in self.found:
            self.found.append(problem)

    def cell(self, error: CellError) -> None:
        for path, message in error.problems:
            self.bad(path, message)

    def include(self, error: ManifestError) -> None:
        """An included manifest's problems, each naming that manifest's file, each once (a file that two
        included manifests include reports its problems through both)."""
        for p in error.problems:
            problem = Problem(p.path, p.message, p.line, p.file or error.file)
            if problem not in self.found:
                self.found.append(problem)

    def check(self) -> None:
        """Raise ManifestError listing every problem, if there is one."""
        if self.found:
            raise ManifestError(self.file, self.found)


Bad = Callable[[tuple, str], None]  # Problems.bad, the callback the parsing functions report through


def dotted(path: tuple) -> str:
    """A YAML key path as text: ("grid", "model.head", 1) -> "grid.model.head[1]"."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxset = 6
_SHOWN.maxdict, _SHOWN.maxlevel, _SHOWN.maxlong = 4, 3, 40


def shown(value: Any) -> str:
    """`value` as a message quotes it: its repr, shortened (strings to 60 characters, containers to their
    first items, a few levels deep), so no value can make a message grow without bound."""
    return _SHOWN.repr(value)


class SpecError(ValueError):
    """A spec check that fails, naming the fields at fault (`field` within the checked section, or
    `section.field` for a check across sections), so the manifest layer reports it at the YAML line of
    the value that set them rather than at the section. pydantic keeps it in an error's ctx["error"]."""

    def __init__(self, message: str, *fields: str):
        super().__init__(message)
        self.fields = fields


def explain(err: dict[str, Any], model: type | None) -> str:
    """One pydantic error as a sentence that says what would be valid."""
    field_name = str(err["loc"][-1]) if err["loc"] else ""
    if err["type"] == "extra_forbidden" and model is not None:
        return unknown_name("option", field_name, model.model_fields)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return "required, but not given"
    if "input" not in err or err["type"] == "value_error":
        return msg
    return f"{msg} (got {shown(err['input'])}){_type_hint(err)}"


def _type_hint(err: dict[str, Any]) -> str:
    """Why a value of the wrong type is not taken as meant: no value is converted (a spec is strict)."""
    value, kind = err["input"], err["type"]
    if isinstance(value, bool) and kind in ("int_type", "float_type"):
        return ": yes/no/true/false is a bool, not a number"
    if isinstance(value, str) and kind in ("int_type", "float_type"):
        try:
            float(value)
        except ValueError:
            return ""
        return f": text, not a number (it is quoted); write {value.strip()} without quotes"
    if isinstance(value, float) and kind == "int_type":
        return ": an integer is written without a fraction"
    return ""
