"""The command line's front door: every path and every option's value checked before anything is imported,
read or written. A bad one exits 2 with a message that names the option and says what would be valid, no
traceback, nothing created (the `refused` fixture checks all of that); the refusals that come before a
manifest is read import no torch; the path check agrees with what the file system then does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import vitstudy
from vitstudy.cli import main, paths

TINY = (Path(__file__).resolve().parent / "manifests" / "tiny.yaml").read_text()  # axes: model.head
FILES = {"m.yaml": TINY, "afile": "not a folder\n", "adir/kept": ""}
WRITE = "give a folder you can write"
METRICS = ["valid: test/acc1", "best:M", "M@epochK"]
SLURM = ["run-grid", "m.yaml", "--backend", "slurm"]


def cases(command: list[str], option: str, values: dict[str, list[str]], words: list[str]) -> dict:
    """One case per bad value of `option`: (argv, the words the message must hold: the option's name, the
    value's own words, and `words`, what would be valid)."""
    return {f"{command[0]} {option} {value!r}": ([*command, option, value], [option, *own, *words])
            for value, own in values.items()}


CASES = {
    # paths: where the command writes, or the results root it reads
    **cases(["run-grid", "m.yaml"], "--out", {
        "afile": ["'afile': is a file, not a folder"],
        "afile/results": ["'afile' is a file, so nothing can be made under it"],
        "res\0ults": ["NUL byte"],
        "x" * 300: ["is longer than the 255 bytes a name may have here"],
    }, [WRITE]),
    **cases(["run-grid", "m.yaml", "--check"], "--junit", {
        "adir": ["'adir': is a folder, not a file"],
        "afile/gate.xml": ["'afile' is a file"],
    }, ["give a file in a folder you can write"]),
    **cases(["plan", "m.yaml"], "--out", {"afile": ["is a file, not a folder"]}, ["give a folder"]),
    **cases(["check", "m.yaml"], "--out", {"afile/r": ["'afile' is a file"]}, ["give a folder"]),
    **cases(["check", "m.yaml"], "--junit", {"afile/gate.xml": ["'afile' is a file"]}, ["give a file"]),
    **cases(["report", "m.yaml"], "--to", {"afile": ["is a file, not a folder"],
                                          "adir/kept/table": ["'adir/kept' is a file"]}, [WRITE]),
    **cases(["report", "m.yaml"], "--out", {"afile": ["is a file, not a folder"]}, [WRITE]),
    **cases(["bench", "loop"], "--out", {"afile": ["is a file, not a folder"]}, [WRITE]),
    # report's options; the axes are checked against the grid's (model.head) once it is read
    **cases(["report", "m.yaml"], "--baseline", {
        "foo": ["'foo' is not AXIS=VALUE"], "head=": ["'head=' is not AXIS=VALUE"],
        "=cls": ["'=cls' is not AXIS=VALUE"], "head=cls,,": ["'head=cls,,' has an empty item"],
        "head=cls,head=gap": ["the axis 'head' is given twice"],
    }, ["head=cls,position=learned"]),
    **cases(["report", "m.yaml"], "--baseline", {"headz=cls": ["unknown axis 'headz'"]}, ["vary here: model.head"]),
    **cases(["report", "m.yaml"], "--rows", {
        "": ["'' has an empty item"], "head,,": ["empty item"], "head,head": ["'head' is given twice"],
        "model..head": ["'model..head' is not an axis name"], "headz": ["unknown axis 'headz'"],
    }, ["head"]),
    **cases(["report", "m.yaml"], "--cols", {"a b": ["'a b' is not an axis name"],
                                            "position": ["unknown axis 'position'", "model.head"]}, ["head"]),
    **cases(["report", "m.yaml", "--rows", "head"], "--cols", {"head": ["also in --rows"]}, ["not both"]),
    **cases(["report", "m.yaml"], "--metrics", {
        "test/acc2": ["unknown metric 'test/acc2'"], "best:params": ["'best:params'"],
        "val/acc1@epoch0": ["'val/acc1@epoch0'"], "best:train/loss": ["'best:train/loss'"],
    }, METRICS),
    **cases(["report", "m.yaml"], "--metrics", {",": ["',' has an empty item"]}, ["e.g. test/acc1,best:test/acc1"]),
    **cases(["report", "m.yaml"], "--format", {"pdf": ["'pdf'"]}, ["'md', 'csv', 'tex', 'html'"]),
    # run-grid's numbers and names
    **cases(["run-grid", "m.yaml"], "--workers", {v: [f"{v!r} is not a positive integer"]
                                                  for v in ("0", "-1", "two", "1.0", "+1", "²", "")}, []),
    **cases(["run-grid", "m.yaml"], "--workers", {"1025": ["more than 1,024"]}, ["the most it may be"]),
    **cases(["run-grid", "m.yaml"], "--pack", {v: [repr(v)] for v in ("0", "-2", "many", "²")},
            ["auto, off or a number of members >= 1"]),
    **cases(["run-grid", "m.yaml"], "--backend", {"k8s": ["'k8s'"]}, ["'local', 'slurm', 'ray'"]),
    **cases(SLURM, "--time", {v: [repr(v)] for v in ("0", "0:0", "soon", "1:2:3:4", "٣", "1 h")},
            ["give minutes or [D-]H:M:S, at least one minute"]),
    **cases(SLURM, "--gpus-per-cell", {"-1": ["'-1' is not a whole number >= 0"], "65": ["more than 64"]}, []),
    **cases(SLURM, "--cpus-per-cell", {"0": ["'0' is not a positive integer"]}, []),
    **cases(SLURM, "--max-concurrent", {"0": ["'0' is not a positive integer"]}, []),
    **cases(SLURM, "--mem-gb", {v: [repr(v)] for v in ("0", "-4", "nan", "inf", "1e300")},
            ["a number above 0 and at most 1,048,576"]),
    **cases(SLURM, "--mem-gb", {"lots": ["'lots' is not a number"]}, []),
    **cases(SLURM, "--partition", {"": ["''"], "gpu\n#SBATCH --wrap=x": ["'gpu\\n#SBATCH --wrap=x'"]},
            ["without spaces or control characters"]),
    **{name: (argv, words) for option in ("--account", "--qos", "--constraint", "--address")
       for name, (argv, words) in cases(SLURM, option, {"a b": ["'a b' is not a name"]}, ["without spaces"]).items()},
    **cases(SLURM, "--sbatch", {"=x": ["'=x'"], "mail type=END": ["'mail type=END'"],
                                "mail-type=END\n#SBATCH --wrap=x": ["'mail-type=END\\n#SBATCH --wrap=x'"]},
            ["use KEY=VALUE (or KEY for a flag)"]),
    # profile: a preset and its sizes, refused before torch loads (see the subprocess test below)
    **cases(["profile", "vit_tiny"], "--img-size", {"0": ["'0' is not a positive integer"],
                                                    "2.5": ["'2.5'"], "99999": ["more than 16,384"]}, []),
    **cases(["profile", "vit_tiny"], "--img-size", {"30": ["vit_tiny --img-size 30: img_size 30 is not a multiple "
                                                           "of patch_size 16"]}, ["valid patch sizes"]),
    **cases(["profile", "vit_tiny"], "--num-classes", {"0": ["'0' is not a positive integer"]}, []),
    **cases(["profile", "vit_tiny"], "--in-chans", {"-3": ["'-3' is not a positive integer"]}, []),
    **cases(["profile", "m.yaml"], "--batch-size", {"0": ["'0' is not a positive integer"]}, []),
    **cases(["profile", "m.yaml"], "--device", {"gpu": ["'gpu' is not a device"]}, ["cpu, cuda, cuda:N or mps"]),
    **cases(["profile", "vit_tiny"], "--batch-size", {"8": []}, ["applies to a manifest, not a preset"]),
    **cases(["profile", "vit_tiny"], "--device", {"cpu": []}, ["applies to a manifest, not a preset"]),
    **cases(["profile", "m.yaml"], "--img-size", {"32": []}, ["applies to a preset, not a manifest"]),
    "profile an unknown preset": (["profile", "vit_tinyy"], ["unknown preset 'vit_tinyy'", "vit_tiny, vit_small"]),
    # bench
    **cases(["bench", "contention"], "--seconds", {"0": ["'0'"], "nan": ["'nan'"]}, ["above 0 and at most 3,600"]),
    **{name: (argv, words) for option in ("--rounds", "--epochs", "--seeds")
       for name, (argv, words) in cases(["bench", "pack"], option, {"0": ["'0' is not a positive integer"]},
                                        []).items()},
    **cases(["bench", "mixers"], "--only", {"nope": ["unknown mixer variant 'nope'"]}, ["attention+softmax, "]),
    **cases(["bench", "loop"], "--device", {"tpu": ["'tpu'"]}, ["'cpu', 'cuda'"]),
}


@pytest.mark.parametrize("argv, words", CASES.values(), ids=list(CASES))
def test_a_bad_path_or_value_is_refused_naming_the_option_and_what_is_valid(argv, words, refused):
    err = refused(argv, files=FILES)
    assert all(w in err for w in words), f"missing {[w for w in words if w not in err]} in:\n{err}"


def test_a_symbolic_link_to_nothing_is_no_folder(refused, tmp_path):
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    err = refused(["run-grid", "m.yaml", "--out", "gone"], files=FILES)
    assert "--out 'gone': is a symbolic link to" in err and "which does not exist; " + WRITE in err
    err = refused(["run-grid", "m.yaml", "--out", "gone/results"], files=FILES)
    assert "--out 'gone/results': 'gone' is a symbolic link to" in err


@pytest.fixture
def read_only(tmp_path):
    """A read-only file system (a tmpfs) mounted at tmp_path/ro: what stops root too."""
    ro = tmp_path / "ro"
    ro.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True,
                          text=True)
    if done.returncode:  # as tests/grid/test_faults.py: fail, saying why, rather than skip
        pytest.fail(f"mounting a read-only tmpfs needs root with mount rights (CAP_SYS_ADMIN), as CI has: "
                    f"{done.stderr.strip()}")
    yield ro
    subprocess.run(["umount", str(ro)], check=True)


def test_a_read_only_file_system_is_refused_where_the_command_writes_and_read_where_it_reads(read_only, refused,
                                                                                            capsys):
    for argv in (["run-grid", "m.yaml", "--out", "ro/results"], ["report", "m.yaml", "--out", "ro"],
                 ["report", "m.yaml", "--to", "ro/report"], ["check", "m.yaml", "--junit", "ro/gate.xml"]):
        err = refused(argv, files=FILES)
        assert "'ro' is not writable (its permissions, or a read-only file system)" in err, err
    assert main(["plan", "m.yaml", "--out", "ro/results"]) == 0  # plan only reads the results root
    assert "2 pending" in capsys.readouterr().out


def test_permission_bits_refuse_a_user_but_not_root(refused, tmp_path):
    """Root writes through permission bits, so a folder of mode 555 is refused for a user and accepted for
    root, who can in fact make the results folder in it."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    if os.geteuid() != 0:
        err = refused(["run-grid", "m.yaml", "--out", "locked/results"], files=FILES)
        assert "'locked' is not writable" in err
    else:
        assert paths.folder("--out", locked / "results", written=True) == []
        (locked / "results").mkdir()
    locked.chmod(0o755)


def test_the_folder_check_agrees_with_making_the_folder(tmp_path):
    """For each place: the check finds no problem exactly when the folder (and its parents) can be made."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    places = ["new/deeper/results", "adir", "adir/results", "afile", "afile/results", "gone", "gone/x",
              "new/" + "x" * 256, "adir/../adir/r", "afile/../r"]
    for place in places:
        path = tmp_path / place
        problem = paths.folder("--out", path, written=True)
        try:
            path.mkdir(parents=True, exist_ok=True)
            made = True
        except OSError:
            made = False
        assert made == (problem == []), (place, problem)


TORCH_FREE = """
import json, sys
from vitstudy.cli import main
seen = []
for argv in json.loads(sys.argv[1]):
    try:
        status = main(argv)
    except SystemExit as e:
        status = e.code
    seen.append([argv, status, sorted(m for m in ("torch", "lightning") if m in sys.modules)])
print(json.dumps(seen))
"""


def test_refusals_before_the_manifest_is_read_import_no_torch(tmp_path):
    """`profile` of an unknown preset and every path or flag refusal of the table above end before torch
    (or Lightning) is imported: run in a fresh interpreter, one after another."""
    for name, body in FILES.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(body)
    argvs = [["profile", "nosuch"], ["profile", "vit_tiny", "--img-size", "30"],
             ["profile", "m.yaml", "--img-size", "32"], ["profile", "vit_tiny", "--num-classes", "0"],
             ["run-grid", "m.yaml", "--out", "afile"], ["run-grid", "m.yaml", "--workers", "0"],
             [*SLURM, "--time", "0"], [*SLURM, "--sbatch", "=x"], ["plan", "m.yaml", "--out", "afile/x"],
             ["check", "m.yaml", "--junit", "adir"], ["report", "m.yaml", "--baseline", "foo"],
             ["report", "m.yaml", "--to", "afile"], ["report", "m.yaml", "--metrics", "nope"],
             ["bench", "--out", "afile"]]
    res = subprocess.run([sys.executable, "-c", TORCH_FREE, json.dumps(argvs)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [[argv, 2, []] for argv in argvs], res.stderr


def test_python_callers_get_the_same_refusals(tmp_path):
    (tmp_path / "m.yaml").write_text(TINY)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(vitstudy.GridError, match=r"^--out '.*afile': is a file, not a folder; give a folder"):
        vitstudy.run_grid(tmp_path / "m.yaml", tmp_path / "afile")
    with pytest.raises(vitstudy.GridError, match=r"^baseline: 'foo' is not AXIS=VALUE"):
        vitstudy.load_table(tmp_path / "m.yaml", tmp_path / "results", baseline="foo")
    with pytest.raises(vitstudy.GridError, match=r"^metrics: unknown metric 'acc'"):
        vitstudy.load_table(tmp_path / "m.yaml", tmp_path / "results", metrics=["acc"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "m.yaml"]
