"""A manifest's `include:`: the other manifests whose cells it adds, each path relative to the including
file (globs allowed) and inside the project (the folder of the manifest given on the command line), or a
folder allowed explicitly (VITSTUDY_INCLUDE_ROOT, `load(..., include_root=)`). An absolute path, a `../`
or a symlink leading out is refused, as is an include cycle; a file included by several manifests is read
once.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, Callable

from vitstudy.config.errors import ManifestError, Problems, shown

INCLUDE_ROOT_ENV = "VITSTUDY_INCLUDE_ROOT"  # folders (os.pathsep-separated) includes may come from too


def include_base(file: str | Path) -> Path:
    """The folder a manifest's include paths are relative to: its file's (resolved); the current folder
    for manifest text without a file. For the manifest given on the command line, also its project."""
    return Path(str(file)).resolve().parent if Path(str(file)).name != "<manifest>" else Path.cwd().resolve()


def includes(value: Any, file: str | Path, stack: tuple[Path, ...], problems: Problems,
             load: Callable[[Path, tuple[Path, ...]], Any], roots: tuple[Path, ...]) -> list:
    """The grids of `include:` (paths relative to `file`, globs allowed), each read once with `load(path,
    stack)`. Every file must lie inside `roots` (resolved folders: the project, i.e. the folder of the
    manifest given on the command line, then any folder allowed explicitly): an absolute path, `../` or a
    symlink that leads out of them is refused, as are a path that is not printable text and an include
    cycle; those and an included manifest's problems are reported into `problems`."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        problems.bad(("include",), f"{shown(value)}: include is a manifest path or a list of them (globs "
                                   "allowed), relative to this file")
        return []
    here = Path(str(file)).resolve()
    base = include_base(file)
    grids, done = [], set()
    for i, pattern in enumerate(items):
        at = ("include", i) if isinstance(value, list) else ("include",)
        for target, problem in _include_targets(pattern, base, roots):
            if problem:
                problems.bad(at, f"{shown(pattern)} {problem}")
            elif target == here or target in stack:
                problems.bad(at, f"{shown(pattern)} includes itself (include cycle: "
                                 f"{' -> '.join(p.name for p in (*stack, here, target))})")
            elif target not in done:
                done.add(target)
                try:
                    grids.append(load(target, (*stack, here)))
                except ManifestError as e:
                    problems.include(e)
    return grids


def _include_targets(pattern: str, base: Path,
                     roots: tuple[Path, ...]) -> list[tuple[Path | None, str | None]]:
    """Each file an include path names, resolved, or None with what is wrong."""
    inside = f"inside the project {roots[0]}" + "".join(f" or {r}" for r in roots[1:])
    allow = f"allow another folder with {INCLUDE_ROOT_ENV}=DIR"
    if not pattern or not pattern.isprintable():
        return [(None, "is not a path: an include path is printable text (no control characters or NUL "
                       "bytes), relative to this manifest")]
    if Path(pattern).is_absolute() and not _within(Path(os.path.normpath(pattern)), roots):
        return [(None, f"is an absolute path: include paths are relative to this manifest and stay {inside} "
                       f"({allow})")]
    found = sorted(glob.glob(pattern, root_dir=base)) if glob.has_magic(pattern) else [pattern]
    if not found:
        return [(None, f"matches no file (paths are relative to {base})")]
    out = []
    for name in found:
        given = Path(os.path.normpath(base / name))
        try:
            target = given.resolve()
        except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop
            out.append((None, f"cannot be read: {e}"))
            continue
        if not _within(target, roots):
            how = f"is a symlink to {target}" if _within(given, roots) else f"leads to {target}"
            out.append((None, f"{how}, outside the project: include paths stay {inside} ({allow})"))
            continue
        try:
            target.stat()
        except FileNotFoundError:
            out.append((None, f"names no file (no such manifest file {target})"))
            continue
        except OSError as e:
            out.append((None, f"cannot be read: {e.strerror or e}"))
            continue
        out.append((target, None))
    return out


def _within(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path.is_relative_to(root) for root in roots)
