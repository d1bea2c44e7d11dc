"""Bad manifests: every problem names the file, line and key path and what is valid; the CLI exits 2
with no traceback and writes nothing."""

from pathlib import Path

import pytest

from vitstudy.cli import main
from vitstudy.config.manifest import ManifestError, load, parse

ROOT = Path(__file__).resolve().parents[2]
HEAD = "defaults:\n  model: {preset: vit_micro}\n  data: {dataset: digits}\n"
TINY_GRID = (Path(__file__).resolve().parents[1] / "manifests" / "tiny.yaml").read_text()


BAD = {
    "unknown top-level key": ("grdi: {}\n", "grdi", "did you mean 'grid'"),
    "unknown mixer in grid": ("grid:\n  model.mixer: [attention, atention]\n", "grid.model.mixer[1]",
                              "did you mean 'attention'"),
    "unknown model option": ("defaults:\n  model: {preset: vit_micro, embed_dmi: 3}\n  data: {dataset: digits}\n",
                             "defaults.model.embed_dmi", "did you mean 'embed_dim'"),
    "unknown preset": ("defaults:\n  model: {preset: vit_tny}\n  data: {dataset: digits}\n",
                       "defaults.model.preset", "did you mean 'vit_tiny'"),
    "unknown dataset": ("defaults:\n  model: {preset: vit_micro}\n  data: {dataset: digts}\n",
                        "defaults.data.dataset", "did you mean 'digits'"),
    "wrong type": ("defaults:\n  model: {preset: vit_micro}\n  data: {dataset: digits}\n  train: {epochs: many}\n",
                   "defaults.train.epochs", "integer"),
    "out of range": ("defaults:\n  model: {preset: vit_micro}\n  data: {dataset: digits}\n  train: {lr: -1}\n",
                     "defaults.train.lr", "greater than 0"),
    "heads do not divide width": ("defaults:\n  model: {preset: vit_micro, num_heads: 5}\n  data: {dataset: digits}\n",
                                  "num_heads", "does not divide"),
    "bad grid key": ("grid:\n  head: [cls]\n", "grid.head", "section.field"),
    "unknown grid field": ("grid:\n  model.haed: [cls]\n", "grid.model.haed", "did you mean 'head'"),
    "empty axis": ("grid:\n  model.head: []\n", "grid.model.head", "non-empty list"),
    "bad seeds": ("seeds: [0, -1]\n", "seeds", "non-negative"),
    "repeated seed": ("seeds: [1, 1]\n", "seeds", "repeats"),
    "bad grid name": ("name: ../escape\n", "name", "valid grid name"),
    "missing dataset": ("defaults:\n  model: {preset: vit_micro}\n", "dataset", "required"),
    "bad precision": ("defaults:\n  model: {preset: vit_micro}\n  data: {dataset: digits}\n  train: {precision: fp8}\n",
                      "defaults.train.precision", "bf16-mixed"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_manifest_names_the_key_and_what_is_valid(case):
    text, key, hint = BAD[case]
    with pytest.raises(ManifestError) as info:
        parse(text, "bad.yaml")
    rendered = info.value.render()
    assert key in rendered and hint in rendered, rendered
    assert rendered.startswith("bad.yaml")


# --- errors that teach: exit 2, the key, what is valid, no traceback, nothing written -------------
BAD_ENGINE = {  # name: (manifest text, key named, hint, extra files, extra CLI flags)
    "zip unequal lengths": (HEAD + "grid:\n  zip: {model.embed_dim: [32, 64], model.num_heads: [2]}\n",
                            "grid.zip", "differ in length", {}, []),
    "zip unknown key": (HEAD + "grid:\n  zip: {model.embed_dmi: [32]}\n", "grid.zip.model.embed_dmi",
                        "did you mean 'embed_dim'", {}, []),
    "zip not a mapping": (HEAD + "grid:\n  zip: [1, 2]\n", "grid.zip[0]", "zip is a mapping", {}, []),
    "key on two axes": (HEAD + "grid:\n  model.head: [cls]\n  zip: {model.head: [gap]}\n", "grid.zip.model.head",
                        "already an axis", {}, []),
    "sub-grid not a mapping": (HEAD + "grid:\n  - {model.head: [cls]}\n  - 3\n", "grid[1]", "a grid is a mapping",
                               {}, []),
    "typo in a sub-grid": (HEAD + "grid:\n  - {model.head: [cls]}\n  - {model.head: [gapp]}\n",
                           "grid[1].model.head[0]", "did you mean 'gap'", {}, []),
    "empty list of sub-grids": (HEAD + "grid: []\n", "grid", "empty list of sub-grids", {}, []),
    "exclude not a list": (HEAD + "exclude: {model.head: cls}\n", "exclude", "list of rules", {}, []),
    "exclude unknown key": (HEAD + "grid:\n  model.head: [cls, gap]\nexclude:\n  - {model.haed: cls}\n",
                            "exclude[0].model.haed", "did you mean 'head'", {}, []),
    "exclude matches nothing": (HEAD + "grid:\n  model.head: [cls, gap]\nexclude:\n  - {model.head: gapp}\n",
                                "exclude[0]", "matches no cell", {}, []),
    "exclude empty rule": (HEAD + "exclude:\n  - {}\n", "exclude[0]", "a rule is a mapping", {}, []),
    "everything excluded": (HEAD + "grid:\n  model.head: [cls]\nexclude:\n  - {model.head: cls}\n", "grid",
                            "no cells", {}, []),
    "expect not a number": (HEAD + "expect:\n  - {match: {model.head: cls}, test/acc1: high}\n",
                            "expect[0].test/acc1", "finite number", {}, []),
    "expect unknown match key": (HEAD + "expect:\n  - {match: {model.presett: x}, test/acc1: 1}\n",
                                 "expect[0].match.model.presett", "did you mean 'preset'", {}, []),
    "expect without values": (HEAD + "expect:\n  - {match: {model.head: cls}}\n", "expect[0]",
                              "at least one metric", {}, []),
    "expect matches nothing": (HEAD + "expect:\n  - {match: {model.preset: deit_tiny}, test/acc1: 72.2}\n",
                               "expect[0].match", "matches no cell", {}, []),
    "expect source not a string": (HEAD + "expect:\n  - {test/acc1: 1, source: [a]}\n", "expect[0].source",
                                   "source is a string", {}, []),
    "smoke unknown option": (HEAD + "smoke:\n  train: {epoch: 1}\n", "smoke.train.epoch", "did you mean 'epochs'",
                             {}, []),
    "smoke unknown section": (HEAD + "smoke:\n  trian: {epochs: 1}\n", "smoke.trian", "did you mean 'train'",
                              {}, []),
    "smoke out of range": (HEAD + "smoke:\n  train: {epochs: 0}\n", "smoke.train.epochs", "greater than 0", {},
                           ["--smoke"]),
    "smoke bad seeds": (HEAD + "smoke:\n  seeds: [-1]\n", "smoke.seeds", "non-negative", {}, []),
    "include missing file": (HEAD + "include: [nope.yaml]\n", "include[0]", "no such manifest", {}, []),
    "include cycle": (HEAD + "include: [m.yaml]\n", "include[0]", "includes itself", {}, []),
    "include not a path": (HEAD + "include: {a: 1}\n", "include", "manifest path or a list", {}, []),
    "error inside an included file": ("include: sub.yaml\n", "defaults.model.mixer", "did you mean 'attention'",
                                      {"sub.yaml": "defaults:\n  model: {preset: vit_micro, mixer: atention}\n"
                                                   "  data: {dataset: digits}\n"}, []),
}
CASES = {**{k: (v[0], v[1], v[2], {}, []) for k, v in BAD.items()}, **BAD_ENGINE}


def test_there_are_at_least_25_bad_manifests():
    assert len(CASES) >= 25 + 16 - 1


@pytest.mark.parametrize("case", CASES)
def test_bad_manifest_exits_2_naming_its_key(case, tmp_path, capsys):
    text, key, hint, extra, flags = CASES[case]
    for name, body in extra.items():
        (tmp_path / name).write_text(body)
    path = tmp_path / "m.yaml"
    path.write_text(text)
    out = tmp_path / "results"
    for command in ("plan", "run-grid"):
        assert main([command, str(path), "--out", str(out), *flags]) == 2
        err = capsys.readouterr().err
        assert key in err and hint in err, err
        assert "Traceback" not in err and "nothing was run" in err
    assert not out.exists()


def test_errors_in_included_files_name_that_file(tmp_path):
    (tmp_path / "sub.yaml").write_text("defaults:\n  model: {preset: vit_micro}\n  data: {dataset: digts}\n")
    (tmp_path / "top.yaml").write_text("include: [sub.yaml]\n")
    with pytest.raises(ManifestError) as info:
        load(tmp_path / "top.yaml")
    assert f"{tmp_path / 'sub.yaml'}:3: defaults.data.dataset" in info.value.render()


