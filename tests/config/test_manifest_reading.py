"""Reading a manifest, bounded (vitstudy.config.yaml_lines, manifest, manifest_include): a regular
file of UTF-8 text under the size cap, parsed once, no repeated keys, aliases bounded, typed top-level
values, include paths inside the project. Every bad case goes through the front door (`vitstudy plan`,
some also `run-grid`): exit 2, no traceback, nothing written, a message naming the file, the line and key
path and what would be valid."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vitstudy.config.cells import make_run_id
from vitstudy.config.manifest import ManifestError, load, parse
from vitstudy.config.manifest_include import INCLUDE_ROOT_ENV
from vitstudy.config.yaml_lines import MAX_BYTES, MAX_NODES

VALID = "defaults:\n  model: {preset: vit_micro}\n  data: {dataset: digits}\n"


@pytest.fixture(autouse=True)
def _no_allowed_include_root(monkeypatch):
    monkeypatch.delenv(INCLUDE_ROOT_ENV, raising=False)


def _bomb(key: str, levels: int = 9) -> str:
    """The billion laughs under `key`: level k is a list of 9 aliases of level k-1 (9**levels values)."""
    names = "abcdefghijklmnop"
    lines = [f"{key}:", f"  - &a [{', '.join(['0'] * 9)}]"]
    lines += [f"  - &{names[k]} [{', '.join([f'*{names[k - 1]}'] * 9)}]" for k in range(1, levels)]
    return "\n".join(lines) + "\n"


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


DUP_TOP = VALID + "grid:\n  model.head: [cls]\nseeds: [0]\ngrid:\n  model.head: [gap]\n"
DUP_MODEL = "defaults:\n  model:\n    preset: vit_micro\n    depth: 2\n    preset: vit_tiny\n  data: {dataset: digits}\n"
DUP_SUBGRID = VALID + "grid:\n  - {model.head: [cls]}\n  - model.head: [cls]\n    model.head: [gap]\n"
BOMB_SEEDS, BOMB_DESCRIPTION = VALID + _bomb("seeds"), VALID + _bomb("description")

# name: (files, the manifest given, what the message must say: file, line and key path, what is valid)
CASES = {
    # the file itself
    "UTF-16": ({"m.yaml": VALID.encode("utf-16")}, "m.yaml",
               ["m.yaml:1: <file>: not UTF-8 text: byte 0xff at offset 0", "UTF-16", "save it as UTF-8"]),
    "Latin-1": ({"m.yaml": (VALID + "description: café au lait\n").encode("latin-1")}, "m.yaml",
                [f"m.yaml:4: <file>: not UTF-8 text: byte 0xe9 at offset {len(VALID) + 16}",
                 "a manifest is UTF-8 text"]),
    "binary": ({"m.yaml": bytes(range(256))}, "m.yaml",
               ["m.yaml:2: <file>: not UTF-8 text: byte 0x80 at offset 128"]),
    "NUL bytes in UTF-8": ({"m.yaml": VALID.encode() + b"seeds: [0]\x00\x00\n"}, "m.yaml",
                           ["m.yaml:4: <yaml>: a NUL byte (a binary file?) at column 11", "a manifest is text"]),
    "control character": ({"m.yaml": VALID + "description: a\x07b\n"}, "m.yaml",
                          ["m.yaml:4: <yaml>: control character U+0007 at column 15"]),
    "a folder": ({"d/m.yaml": VALID}, "d", ["d: <file>: a folder, not a regular file", "a YAML file"]),
    "missing": ({}, "nope.yaml", ["nope.yaml: <file>: cannot read: No such file or directory"]),
    "NUL in the path": ({}, "m\0.yaml", ["'m\\x00.yaml': <file>: the path contains a NUL byte"]),
    "path too long": ({}, "x" * 5000 + ".yaml", ["'xxxxxxxx", "<file>: cannot read: File name too long"]),
    "over the size cap": ({"m.yaml": VALID + "# padding\n" * (MAX_BYTES // 10)}, "m.yaml",
                          ["m.yaml: <file>: larger than 1,048,576 bytes (1 MiB)", "a few KB"]),
    # parsing
    "grid twice": ({"m.yaml": DUP_TOP}, "m.yaml",
                   ["m.yaml:7: grid: the key 'grid' is given twice in one mapping (lines 4 and 7)", "give it once"]),
    "a key twice in defaults.model": ({"m.yaml": DUP_MODEL}, "m.yaml",
                                      ["m.yaml:5: defaults.model.preset: the key 'preset' is given twice",
                                       "(lines 3 and 5)"]),
    "a key twice in a sub-grid": ({"m.yaml": DUP_SUBGRID}, "m.yaml",
                                  ["m.yaml:7: grid[1].model.head: the key 'model.head' is given twice",
                                   "(lines 6 and 7)"]),
    "alias bomb under seeds": ({"m.yaml": BOMB_SEEDS}, "m.yaml",
                               [f"m.yaml:{_line_of(BOMB_SEEDS, '&e')}: seeds[4][0]: this alias repeats 7,381 "
                                f"YAML values (its anchor is at line {_line_of(BOMB_SEEDS, '&d')})",
                                "more than 10,000 values", "alias bomb"]),
    "alias bomb under description": ({"m.yaml": BOMB_DESCRIPTION}, "m.yaml",
                                     [f"m.yaml:{_line_of(BOMB_DESCRIPTION, '&e')}: description[4][0]: this alias",
                                      "alias bomb"]),
    "recursive alias": ({"m.yaml": VALID + "seeds: &s [0, *s]\n"}, "m.yaml",
                        ["m.yaml:4: seeds[1]: a recursive alias: it is inside its own anchor (line 4)",
                         "a value defined before it"]),
    "too many values": ({"m.yaml": VALID + "seeds: [" + ", ".join(["0"] * MAX_NODES) + "]\n"}, "m.yaml",
                        ["m.yaml:4: seeds[", "more than 10,000 YAML values; a manifest has a few hundred"]),
    "nested too deep": ({"m.yaml": VALID + "seeds: " + "[" * 100 + "]" * 100 + "\n"}, "m.yaml",
                        ["m.yaml:4: seeds[0]: nested more than 64 levels deep", "a few levels"]),
    "a huge number": ({"m.yaml": VALID + "seeds:\n  - " + "1:" * 50_000 + "1\n"}, "m.yaml",
                      ["m.yaml:5: seeds[0]: a number of 100,001 characters; a number has at most 100"]),
    "a date that does not exist": ({"m.yaml": VALID + "description: 2024-02-30\n"}, "m.yaml",
                                   ["m.yaml:4: description: '2024-02-30' cannot be read: day is out of range"]),
    "a Python tag": ({"m.yaml": VALID + "seeds: !!python/object/apply:os.system [ls]\n"}, "m.yaml",
                     ["m.yaml:4: seeds: could not determine a constructor", "python/object/apply:os.system"]),
    # top-level values
    "description is a mapping": ({"m.yaml": VALID + "description:\n  what: heads\n"}, "m.yaml",
                                 ["m.yaml:5: description: {'what': 'heads'}: a description is text"]),
    "description is a number": ({"m.yaml": VALID + "description: 42\n"}, "m.yaml",
                                ["m.yaml:4: description: 42: a description is text", "quote it"]),
    "name ends in a newline": ({"m.yaml": 'name: "digits\\n"\n' + VALID}, "m.yaml",
                               ["m.yaml:1: name: 'digits\\n' is not a valid grid name", "letters, digits",
                                "it names a folder"]),
    "name with a slash": ({"m.yaml": "name: a/b\n" + VALID}, "m.yaml", ["m.yaml:1: name: 'a/b' is not a valid"]),
    "name with a tab": ({"m.yaml": 'name: "a\\tb"\n' + VALID}, "m.yaml", ["m.yaml:1: name: 'a\\tb' is not a"]),
    "name ..": ({"m.yaml": "name: ..\n" + VALID}, "m.yaml", ["m.yaml:1: name: '..' is not a valid grid name"]),
    "name too long": ({"m.yaml": f"name: {'n' * 101}\n" + VALID}, "m.yaml", ["1 to 100 letters"]),
    "the file's name is no grid name": ({"my grid.yaml": VALID}, "my grid.yaml",
                                        ["my grid.yaml:1: name: 'my grid' (the file's name; give `name:`) is not"]),
    # includes
    "include an absolute path": ({"m.yaml": VALID + "include: /etc/passwd\n"}, "m.yaml",
                                 ["m.yaml:4: include: '/etc/passwd' is an absolute path: include paths are "
                                  "relative to this manifest and stay inside the project", INCLUDE_ROOT_ENV]),
    "include ../": ({"proj/m.yaml": VALID + "include: [../other.yaml]\n", "other.yaml": VALID}, "proj/m.yaml",
                    ["proj/m.yaml:4: include[0]: '../other.yaml' leads to ", "other.yaml, outside the project",
                     f"{INCLUDE_ROOT_ENV}=DIR"]),
    "include a glob that leaves": ({"proj/m.yaml": VALID + "include: ['../*.yaml']\n", "a.yaml": VALID,
                                    "b.yaml": VALID}, "proj/m.yaml",
                                   ["proj/m.yaml:4: include[0]: '../*.yaml' leads to ", "a.yaml, outside",
                                    "b.yaml, outside"]),
    "an include that includes ../..": ({"proj/m.yaml": "include: sub/a.yaml\n",
                                        "proj/sub/a.yaml": VALID + "include: ../../other.yaml\n",
                                        "other.yaml": VALID}, "proj/m.yaml",
                                       ["sub/a.yaml:4: include: '../../other.yaml' leads to ", "outside the project"]),
    "include a NUL": ({"m.yaml": VALID + 'include: "a\\0b.yaml"\n'}, "m.yaml",
                      ["m.yaml:4: include: 'a\\x00b.yaml' is not a path", "no control characters or NUL bytes"]),
    "include a path too long": ({"m.yaml": VALID + f"include: {'y' * 5000}.yaml\n"}, "m.yaml",
                                ["m.yaml:4: include: 'yyyy", "cannot be read: File name too long"]),
    "include Latin-1": ({"m.yaml": VALID + "include: sub.yaml\n", "sub.yaml": "description: café\n".encode("latin-1")},
                        "m.yaml", ["sub.yaml:1: <file>: not UTF-8 text: byte 0xe9 at offset 16"]),
    "include UTF-16": ({"m.yaml": VALID + "include: sub.yaml\n", "sub.yaml": VALID.encode("utf-16")},
                       "m.yaml", ["sub.yaml:1: <file>: not UTF-8 text: byte 0xff at offset 0", "UTF-16"]),
    "include a folder": ({"m.yaml": VALID + "include: d\n", "d/x.yaml": VALID}, "m.yaml",
                         ["/d: <file>: a folder, not a regular file"]),
    "include a file with an alias bomb": ({"m.yaml": VALID + "include: sub.yaml\n", "sub.yaml": BOMB_SEEDS},
                                          "m.yaml", [f"sub.yaml:{_line_of(BOMB_SEEDS, '&e')}: seeds[4][0]: this alias repeats 7,381"]),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_manifest_is_refused_by_plan_naming_file_line_key_and_what_is_valid(case, refused):
    files, manifest, expected = CASES[case]
    err = refused(["plan", manifest], files=files)
    for words in expected:
        assert words in err, f"{words!r} not in:\n{err}"
    assert "Traceback" not in err and len(err) < 5000  # nothing in it grew with the input


@pytest.mark.parametrize("case", ["UTF-16", "grid twice", "alias bomb under seeds", "include ../",
                                  "name ends in a newline", "over the size cap"])
def test_run_grid_refuses_them_too_and_writes_nothing(case, refused):
    files, manifest, expected = CASES[case]
    err = refused(["run-grid", manifest, "--out", "results"], files=files)
    assert expected[0] in err, err


def test_the_symlink_that_leads_out_of_the_project_is_refused(tmp_path, refused):
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "shared.yaml").symlink_to(tmp_path / "secret.yaml")
    err = refused(["plan", "proj/m.yaml"], files={"proj/m.yaml": VALID + "include: shared.yaml\n",
                                                  "secret.yaml": VALID})
    assert f"proj/m.yaml:4: include: 'shared.yaml' is a symlink to {tmp_path.resolve() / 'secret.yaml'}, " \
           "outside the project" in err, err


# --- what stays allowed ------------------------------------------------------------------------------
def test_anchors_aliases_and_merges_still_share_a_block():
    grid = parse("name: g\ndefaults:\n  model: &m {preset: vit_micro, depth: 2}\n  data: {dataset: digits}\n"
                 "smoke:\n  model:\n    <<: *m\n    depth: 1\nseeds: &s [0, 1]\nexclude: []\n", smoke=True)
    assert [c.spec.model.depth for c in grid.cells] == [1, 1]  # the merge's own key wins, no "twice"
    assert [c.spec.seed for c in grid.cells] == [0, 1]


def test_includes_inside_the_project_and_a_byte_order_mark_are_read(tmp_path):
    (tmp_path / "ablations").mkdir()
    (tmp_path / "common.yaml").write_text(VALID + "name: common\ngrid:\n  model.head: [gap]\n")
    (tmp_path / "ablations" / "x.yaml").write_text(VALID + "name: x\ninclude: ../common.yaml\n")
    (tmp_path / "experiments.yaml").write_bytes(b"\xef\xbb\xbfname: all\ninclude: ablations/*.yaml\n")
    grid = load(tmp_path / "experiments.yaml")
    assert sorted(c.grid for c in grid.cells) == ["common", "x"]


def test_another_root_for_includes_is_allowed_explicitly(tmp_path, monkeypatch):
    (tmp_path / "proj").mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "base.yaml").write_text(VALID + "name: base\n")
    top = tmp_path / "proj" / "m.yaml"
    for include in ("../shared/base.yaml", str(tmp_path / "shared" / "base.yaml")):
        top.write_text(f"include: {include}\n")
        with pytest.raises(ManifestError, match="outside the project|an absolute path"):
            load(top)
        assert [c.grid for c in load(top, include_root=tmp_path / "shared").cells] == ["base"]
        monkeypatch.setenv(INCLUDE_ROOT_ENV, f"{tmp_path / 'elsewhere'}{os.pathsep}{tmp_path / 'shared'}")
        assert [c.grid for c in load(top).cells] == ["base"]
        monkeypatch.delenv(INCLUDE_ROOT_ENV)


def test_run_ids_name_a_single_folder_whatever_the_values_and_are_unchanged_for_schema_names():
    spec = parse("name: g\n" + VALID).cells[0].spec
    assert make_run_id((("model.embed_dim", 64), ("train.lr", 0.001)), spec) == \
        f"embed_dim-64_lr-0.001_s0-{spec.digest()}"
    nasty = make_run_id((("model.he/ad\n", "../a\0/b\nc"), ("x.\x1b[31m", "..")), spec)
    assert nasty == f"head-..abc_31m-.._s0-{spec.digest()}"
    assert nasty.replace("_", "").replace(".", "").replace("+", "").replace("-", "").isalnum()


# --- bounded in time ---------------------------------------------------------------------------------
def _timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    try:
        result = call()
    except ManifestError as e:
        result = e
    return time.perf_counter() - start, result


@pytest.mark.parametrize("text", [BOMB_SEEDS, BOMB_DESCRIPTION], ids=["seeds", "description"])
def test_the_alias_bomb_is_refused_in_well_under_a_second(text, tmp_path):
    (tmp_path / "m.yaml").write_text(text)
    seconds, result = _timed(lambda: load(tmp_path / "m.yaml"))
    assert isinstance(result, ManifestError) and "alias bomb" in str(result)
    assert seconds < 1.0


def test_a_50_mb_manifest_is_refused_and_one_just_under_the_cap_parses_in_well_under_a_second(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(VALID + "# padding\n" * (5 * 1024 * 1024))
    seconds, result = _timed(lambda: load(big))
    assert isinstance(result, ManifestError) and "larger than 1,048,576 bytes" in str(result)
    assert seconds < 1.0
    head = VALID + "name: near\ndescription: "
    near = tmp_path / "near.yaml"
    near.write_text(head + "d" * (MAX_BYTES - len(head) - 1) + "\n")
    assert near.stat().st_size == MAX_BYTES
    seconds, result = _timed(lambda: load(near))
    assert not isinstance(result, ManifestError), result
    assert len(result.description) == MAX_BYTES - len(head) - 1 and len(result.cells) == 1
    assert seconds < 1.0


@pytest.mark.parametrize("heads", [("cls", "gap"), ("clss", "clss")], ids=["valid", "a typo in both leaves"])
def test_a_diamond_of_includes_reads_each_file_once_and_reports_each_problem_once(heads, tmp_path):
    """12 levels, each file including both files of the next level: 2**12 reads (and as many copies of
    a leaf's problem) if each include were read again; each file is read once, each problem told once."""
    for level in range(12):
        for side in "ab":
            (tmp_path / f"{side}{level}.yaml").write_text(f"include: [a{level + 1}.yaml, b{level + 1}.yaml]\n")
    for side, head in zip("ab", heads, strict=True):
        (tmp_path / f"{side}12.yaml").write_text(VALID + f"grid:\n  model.head: [{head}]\n")
    seconds, result = _timed(lambda: load(tmp_path / "a0.yaml"))
    if heads[0] == "cls":
        assert sorted(c.grid for c in result.cells) == ["a12", "b12"]
    else:
        assert [(Path(p.file).name, p.line, p.path) for p in result.problems] == [
            ("a12.yaml", 5, "grid.model.head[0]"), ("b12.yaml", 5, "grid.model.head[0]")]
    assert seconds < 2.0


# --- never waits on a device or a pipe --------------------------------------------------------------
_LOAD_EACH = """
import sys
from vitstudy.config.manifest import ManifestError, load
for path in sys.argv[1:]:
    try:
        load(path)
    except ManifestError as e:
        print(e.render())
"""


def test_a_fifo_and_dev_zero_are_refused_without_waiting(tmp_path, refused):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    (tmp_path / "m.yaml").write_text(VALID + "include: pipe.yaml\n")
    # in a child first, so that a reader that waits fails this test instead of hanging the suite
    done = subprocess.run([sys.executable, "-c", _LOAD_EACH, "/dev/zero", str(fifo), str(tmp_path / "m.yaml")],
                          capture_output=True, text=True, timeout=20, cwd=Path(__file__).resolve().parents[2])
    assert "/dev/zero: <file>: a character device, not a regular file" in done.stdout, done.stdout + done.stderr
    assert f"{fifo}: <file>: a FIFO (named pipe), not a regular file" in done.stdout
    assert done.stdout.count("a FIFO (named pipe)") == 2  # also as an include
    for manifest, words in (("/dev/zero", "a character device"), ("pipe.yaml", "a FIFO")):
        err = refused(["plan", manifest])
        assert f"{manifest}: <file>: {words}" in err


def test_an_exponent_without_a_dot_is_a_number_as_yaml_1_2_reads_it(tmp_path):
    """YAML 1.1 makes `5e-4` text; the manifest reader makes it the float a researcher means, the same
    cell (and run id) as `5.0e-4`, while a quoted number stays text and is refused."""
    base = ("defaults:\n  model: {preset: vit_micro}\n  data: {dataset: digits}\n  train: {lr: %s}\n"
            "expect:\n  - {params: %s}\n")
    bare, dotted_ = parse(base % ("5e-4", "6e4"), "m.yaml"), parse(base % ("5.0e-4", "6.0e+4"), "m.yaml")
    assert bare.cells[0].spec.train.lr == 5e-4 and bare.cells[0].expect == {"params": 6e4}
    assert [c.run_id for c in bare.cells] == [c.run_id for c in dotted_.cells]
    with pytest.raises(ManifestError, match="defaults.train.lr: .*without quotes"):
        parse(base % ("'5e-4'", "6e4"), "m.yaml")
    with pytest.raises(ManifestError, match="expect\\[0\\].params: '6e4': an expected value is a finite"):
        parse(base % ("5e-4", "'6e4'"), "m.yaml")
