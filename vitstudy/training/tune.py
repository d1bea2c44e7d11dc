"""A tuned grid's final cell picks its training values from its tuning cells (the manifest's `tune:`,
vitstudy.config.tune) when it starts, before it writes anything.

The tuning cells are the run ids in `train.tune_from`, in the same grid folder; their records say how each
ended and what it scored. A candidate is one combination of the tuned values; its score is the mean of
`train.tune_metric` over its seeds (`best:val/acc1` reads the record's `best` part, `val/acc1` its final
metrics), maximised, or minimised for a loss. A candidate any of whose seeds failed or diverged scores
worst: a value that is unstable on some seed is not one to choose. Ties go to the first candidate in
manifest order. The tuned keys are the train options in which the tuning cells differ from the final
cell (a candidate list that only repeats the variant's own value changes nothing).

The final cell trains at the chosen values (its spec.yaml and record["spec"] hold them; its run id stays
the manifest's) and its record gains `tuned`: the chosen values, every candidate's score, and `edge`, the
numeric keys (of two or more candidate values) whose chosen value is the smallest or largest candidate:
the range should be widened there.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from vitstudy import runfolder
from vitstudy.config.spec import RunSpec
from vitstudy.config.tune import metric_mode
from vitstudy.runfolder import FAILURES

FINISHED = ("done", *FAILURES)  # a tuning cell that ended, however: the final cell may start


class TuneError(RuntimeError):
    """A final cell cannot pick its values: a tuning cell has not finished, or every candidate failed."""


def apply_tuning(spec: RunSpec, run_dir: Path) -> tuple[RunSpec, dict[str, Any]]:
    """The spec with the best candidate's values and {"tuned": ...} for the record; a cell that is not
    a tuned grid's final cell comes back as it is, with {}."""
    if not spec.train.tune_from:
        return spec, {}
    folder = Path(run_dir).parent
    records = {run_id: runfolder.read_record(folder / run_id) for run_id in spec.train.tune_from}
    unfinished = {run_id: runfolder.record_status(r) for run_id, r in records.items()
                  if runfolder.record_status(r) not in FINISHED}
    if unfinished:
        listed = ", ".join(f"{run_id} ({status})" for run_id, status in unfinished.items())
        raise TuneError(f"{len(unfinished)} tuning cell(s) not finished: {listed}; run the grid again: the "
                        "executor runs the tuning cells first")
    metric, mode = spec.train.tune_metric, metric_mode(spec.train.tune_metric)
    candidates = _candidates(records, _tuned_keys(spec, records.values()), metric)
    scored = [c for c in candidates if c["score"] is not None]
    if not scored:
        raise TuneError(f"every tuning candidate failed: {_outcomes(candidates)}; nothing to train at")
    best = (max if mode == "max" else min)(scored, key=lambda c: c["score"])  # the first of equal ones
    data = spec.model_dump(mode="json")
    data["train"].update({key.partition(".")[2]: value for key, value in best["values"].items()})
    tuned = {"keys": best["values"], "metric": metric, "mode": mode, "candidates": candidates,
             "edge": _edge(candidates, best["values"])}
    return RunSpec(**data), {"tuned": tuned}


def _tuned_keys(spec: RunSpec, records) -> list[str]:
    """The dotted train keys whose value differs between some tuning cell and this cell, in field order."""
    own = spec.train.model_dump(mode="json", exclude={"tune_from", "tune_metric"})
    return [f"train.{k}" for k, v in own.items() if any(r["spec"]["train"].get(k) != v for r in records)]


def _candidates(records: dict[str, dict], keys: list[str], metric: str) -> list[dict]:
    """The candidates in manifest order, each with its tuning cells' run ids (one per seed)."""
    groups: dict[str, list[str]] = {}
    for run_id, record in records.items():
        groups.setdefault(repr(_values(record, keys)), []).append(run_id)
    return [_candidate(records, run_ids, keys, metric) for run_ids in groups.values()]


def _candidate(records: dict[str, dict], run_ids: list[str], keys: list[str], metric: str) -> dict:
    """One candidate: its values, its score (None unless every seed is done with a finite value), how
    many seeds scored, their statuses and run ids."""
    statuses = Counter(runfolder.record_status(records[r]) for r in run_ids)
    scores = [_value(records[r], metric, r) for r in run_ids if runfolder.record_status(records[r]) == "done"]
    finite = [s for s in scores if math.isfinite(s)]
    return {"values": _values(records[run_ids[0]], keys),
            "score": statistics.fmean(finite) if len(finite) == len(run_ids) else None,
            "n": len(finite), "statuses": dict(statuses), "runs": run_ids}


def _values(record: dict, keys: list[str]) -> dict[str, Any]:
    return {key: record["spec"]["train"][key.partition(".")[2]] for key in keys}


def _value(record: dict, metric: str, run_id: str) -> float:
    part, name = ("best", metric[5:]) if metric.startswith("best:") else ("metrics", metric)
    value = (record.get(part) or {}).get(name)
    if value is None:
        raise TuneError(f"tuning cell {run_id} is done but its record has no {metric}")
    return float(value)


def _edge(candidates: list[dict], chosen: dict[str, Any]) -> list[str]:
    """The keys whose chosen value is the smallest or largest of their numeric candidate values."""
    edge = []
    for key, value in chosen.items():
        numbers = {c["values"][key] for c in candidates if _is_number(c["values"][key])}
        if _is_number(value) and len(numbers) > 1 and value in (min(numbers), max(numbers)):
            edge.append(key)
    return edge


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _outcomes(candidates: list[dict]) -> str:
    return "; ".join(", ".join(f"{k}={v}" for k, v in c["values"].items()) + " "
                     + ", ".join(f"{n} {s}" for s, n in c["statuses"].items()) for c in candidates)
