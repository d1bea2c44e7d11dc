"""The folders and files a command names (run-grid's results root, report's folder, check's JUnit file,
bench's folder), checked when the command starts, before anything is imported, read or written: a
problem is one line that names the option and says what would be valid.

A path is refused when it cannot be what the command needs: it holds a NUL byte; a name in it is longer
than the file system takes; a file (or a symbolic link to nothing) stands where the folder should be, or
where one of its parent folders should be; a folder stands where a file should be. A place the command
writes is also refused when it is unwritable: the nearest folder that exists (where the missing ones
would be made, or the folder itself) is not writable for this user as access(2) answers, which is its
permission bits for a user other than root, and a read-only file system for everyone. Root writes
through permission bits, so as root a folder of mode 555 is writable and is accepted; only what stops
root too (a read-only mount, a file in the way) is refused. Whatever the check cannot know (a disk that
fills, a folder made read-only later) ends the command when it happens, as a failed write.
"""

from __future__ import annotations

import os
from pathlib import Path

from vitstudy.config.errors import shown

NAME_MAX, PATH_MAX = 255, 4096  # Linux's, where the file system does not say


def folder(option: str, path: Path, *, written: bool) -> list[str]:
    """The problem (none or one) with `path` as the folder `option` names; `written`: the command writes
    there (the folder and its missing parents are made)."""
    valid = "give a folder you can write (it is made if missing)" if written else "give a folder"
    why = _problem(Path(path), want_folder=True, written=written)
    return [f"{option} {shown(str(path))}: {why}; {valid}"] if why else []


def file(option: str, path: Path | None) -> list[str]:
    """The problem (none or one) with `path` as the file `option` names, which the command writes."""
    if path is None:
        return []
    why = _problem(Path(path), want_folder=False, written=True)
    return [f"{option} {shown(str(path))}: {why}; give a file in a folder you can write"] if why else []


def _problem(path: Path, want_folder: bool, written: bool) -> str | None:
    text = os.fspath(path)
    if "\0" in text:
        return "a path cannot hold a NUL byte"
    try:
        size = len(os.fsencode(text))
    except UnicodeEncodeError:
        return "a path cannot hold characters the file system cannot encode"
    nearest = next(p for p in (path, *path.parents) if os.path.lexists(p))  # "." or "/" at the latest
    limits = _limits(nearest if nearest.is_dir() else nearest.parent)
    if too_long := [part for part in path.parts if len(os.fsencode(part)) > limits[0]]:
        return f"the name {shown(too_long[0])} is longer than the {limits[0]} bytes a name may have here"
    if size >= limits[1]:
        return f"the path is longer than the {limits[1] - 1} bytes a path may have here"
    if not nearest.exists():
        where = "" if nearest == path else f"{shown(str(nearest))} "
        return f"{where}is a symbolic link to {shown(os.readlink(nearest))}, which does not exist"
    if nearest != path and not nearest.is_dir():
        return f"{shown(str(nearest))} is a file, so nothing can be made under it"
    if nearest == path and want_folder and not path.is_dir():
        return "is a file, not a folder" if path.is_file() else "exists and is not a folder"
    if nearest == path and not want_folder and path.is_dir():
        return "is a folder, not a file"
    home = nearest if nearest.is_dir() else nearest.parent  # a file is replaced by one written beside it
    if written and not os.access(home, os.W_OK | os.X_OK):
        return f"{shown(str(home))} is not writable (its permissions, or a read-only file system)"
    return None


def _limits(folder: Path) -> tuple[int, int]:
    """The longest name and path (in bytes) the file system of `folder` takes."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
    except (OSError, ValueError):
        return NAME_MAX, PATH_MAX
