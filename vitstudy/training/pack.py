"""Train several cells at once as one vectorised model (vitstudy.training.packed_model): cells of one
model shape and code path that differ in seed, learning rate, weight decay, label smoothing, warm-up,
clipping, ... (vitstudy.grid.packing decides which). Each member is trained exactly as `run_cell` would
train it alone: its own initial weights, data order and augmentation draws (keyed by its seed, as the
DataModule keys them), Mixup draws, AdamW state and lr schedule (warm-up, cosine, cool-down, lr scaled by
the batch), validated every epoch with the same metrics.

Every member owns its run folder as an unpacked cell does: spec.yaml, metrics.json (the same record,
plus `pack`), TensorBoard events (and the other loggers the spec names), last.ckpt after every epoch and
best.ckpt (vitstudy.training.pack_checkpoint). A member whose training loss turns non-finite is recorded
`diverged` at once and frozen; the others go on. A pack that is killed resumes from its members'
checkpoints. A failure of the pack itself (out of memory, a bug) is recorded as every unfinished member's;
a results folder that cannot be written (full, read-only) is no member's failure: `run_pack` raises a
StorageError and the members resume once it is writable, as `run_cell`'s cell does. Files an earlier
attempt left that cannot be read are recovered before the pack trains (vitstudy.runfolder.recover).

The loop is plain PyTorch, not a Lightning Trainer: a Trainer drives one module with one optimizer and
writes one checkpoint, where a pack needs K of each; it reuses the cell's pieces instead (the DataModule's
splits and samplers, the model builder, the schedule, timm's Mixup, the loggers, the record).
"""

from __future__ import annotations

import math
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from vitstudy import runfolder as files
from vitstudy.config.spec import RunSpec
from vitstudy.data.base import datamodule_for, epoch_sampler
from vitstudy.models.build import build_model
from vitstudy.models.seeding import stable_seed
from vitstudy.runfolder import BEST_FILE, SPEC_FILE, TRACEBACK_FILE
from vitstudy.training import pack_checkpoint as ckpts
from vitstudy.training.callbacks import SELECT, RunMonitor
from vitstudy.training.loggers import build_loggers, finish
from vitstudy.training.pack_batches import MemberBatches, evaluate, peak_lr, schedule
from vitstudy.training.packed_model import PackedAdamW, PackedModel
from vitstudy.training.progress_events import Reporter, Send
from vitstudy.training.run import _record
from vitstudy.training.system import DivergedError, system_arguments
from vitstudy.training.throughput import CELL_INFER_TIMING, inference_throughput, sync
from vitstudy.training.tune import apply_tuning


@dataclass
class Member:
    spec: RunSpec
    run_dir: Path
    tuning: dict
    attempt: dict  # {"attempt", "resumed_from"}
    loggers: list = field(default_factory=list)
    history: list = field(default_factory=list)
    best: dict = field(default_factory=dict)
    train_images: int = 0
    train_seconds: float = 0.0
    train_loss: float = math.nan  # the mean training loss of the latest epoch
    record: dict | None = None  # set when the member ends

    def log(self, metrics: dict, step: int) -> None:
        for logger in self.loggers:
            logger.log_metrics(metrics, step)


def run_pack(specs: list[RunSpec], run_dirs: list[Path], mode: str = "auto", report: Send | None = None
             ) -> list[dict]:
    """Train the cells `specs` (in `run_dirs`) as one pack; return their records in order. Never raises
    for a failing cell: failures are recorded, as `run_cell` records them. `report`: where the members'
    progress goes (vitstudy.training.progress_events), if anywhere."""
    start = time.time()
    members: list[Member] = []
    for spec, run_dir in zip(specs, run_dirs, strict=True):
        member = _prepare(spec, Path(run_dir))
        if member.record is None:
            members.append(member)
    ids = [m.run_dir.name for m in members]
    info = {"mode": mode, "size": len(members), "members": ids}
    try:
        if members:
            _train(members, info, start, report)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - the pack's failure is every unfinished member's
        if (fault := files.storage_error(e, Path(run_dirs[0]).parent)) is not None:
            raise fault from e  # the folder's fault, not the members': their records stay as they are
        for m in members:
            if m.record is None:
                m.record = _failed(m, e, start, info)
    by_dir = {m.run_dir: m.record for m in members}
    return [by_dir.get(Path(d)) or files.read_record(d) for d in run_dirs]


def _prepare(spec: RunSpec, run_dir: Path) -> Member:
    """A member's spec (tuned), folder and `running` record; a member that cannot start (its tuning
    candidates failed) is recorded failed here."""
    notes = files.recover(run_dir)
    previous = files.read_record(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    member = Member(spec, run_dir, {}, {"attempt": previous.get("attempt", 0) + 1, "resumed_from": None,
                                        **({"recovered": notes} if notes else {})})
    try:
        member.spec, member.tuning = apply_tuning(spec, run_dir)
    except Exception as e:  # noqa: BLE001
        member.record = _failed(member, e, time.time(), None)
        return member
    spec_text = yaml.safe_dump(member.spec.model_dump(mode="json"), sort_keys=False)
    files.write_text(run_dir / SPEC_FILE, spec_text)
    files.write_record(run_dir, _record(member.spec, run_dir, status="running", wall=0.0, **member.attempt,
                                        **member.tuning))
    return member


def _failed(m: Member, error: BaseException, start: float, info: dict | None) -> dict:
    status = ("diverged" if isinstance(error, DivergedError)
              else "oom" if isinstance(error, torch.OutOfMemoryError) else "failed")
    record = _record(m.spec, m.run_dir, status=status, wall=time.time() - start,
                     error={"type": type(error).__name__, "message": str(error)[:2000]}, **m.attempt,
                     **({"pack": info} if info else {}))
    text = "".join(traceback.format_exception(error))  # a diverged member's: the type and message only
    files.write_text(m.run_dir / TRACEBACK_FILE, text)
    files.write_record(m.run_dir, record)
    finish(m.loggers)  # the trackers' runs end, as failed
    return record


def device_of(spec: RunSpec) -> torch.device:
    accel = spec.train.accelerator
    return torch.device("cuda" if accel in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu")


def _train(members: list[Member], info: dict, start: float, report: Send | None) -> None:
    specs = [m.spec for m in members]
    first, t = specs[0], specs[0].train
    device = device_of(first)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if t.precision == "bf16-mixed" \
        else nullcontext
    dm = datamodule_for(first)
    dm.setup("fit")
    data = {name: tuple(x.to(device) for x in dm.splits[name].tensors) for name in ("train", "val", "test")}

    done = ckpts.common_epoch([m.run_dir for m in members])
    if done is None:
        raise ValueError("the members' checkpoints are at different epochs: they cannot resume as one pack")
    torch.manual_seed(stable_seed("pack", *[s.seed for s in specs]))  # dropout and drop-path draws
    models = [build_model(s.model, seed=s.seed) for s in specs]
    for m, model in zip(members, models, strict=True):
        if m.spec.train.init_from and not done:  # phase 2 starts from phase 1 (vitstudy.training.phase_init)
            from vitstudy.training.phase_init import init_from_phase

            init_from_phase(model, m.spec, m.run_dir)
    net = PackedModel(models, device)
    opt = PackedAdamW(net, [s.train.weight_decay for s in specs], [s.train.betas for s in specs],
                      [s.train.grad_clip for s in specs])
    for m in members:
        m.loggers = build_loggers(m.spec, m.run_dir)
        for logger in m.loggers:
            logger.log_hyperparams(system_arguments(m.spec))
    if done:
        _restore(members, net, opt, done)

    n, batch = len(data["train"][1]), first.data.batch_size
    per_epoch = math.ceil(len(epoch_sampler(n, True, 0, repeated_aug=t.repeated_aug)) / batch)
    lrs = schedule(specs, per_epoch, t.epochs).to(device)  # (steps, K)
    loop = MemberBatches(specs, data["train"], device)
    k_all = torch.arange(net.k, device=device)
    reporter = Reporter([m.run_dir.name for m in members], report, t.epochs)
    for epoch in range(done, t.epochs):
        net.train()
        loss_sum, nonfinite = torch.zeros(net.k, device=device), torch.zeros(net.k, device=device)
        sync(device)
        t0 = time.perf_counter()
        for b, (x, targets) in enumerate(loop.epoch(epoch, per_epoch)):
            step = epoch * per_epoch + b
            with autocast():
                logits = net(x)  # (K, B, classes)
            losses = -(targets * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean(-1)  # (K,)
            net.flat.grad = None
            torch.where(opt.alive, losses, 0.0).sum().backward()
            opt.step(lrs[step])
            detached = losses.detach()
            nonfinite += ~torch.isfinite(detached)
            loss_sum += detached
            reporter.batch(epoch, b, per_epoch, step + 1, detached, opt.alive)
            for k, m in enumerate(members):
                if m.record is None and (b + 1) % m.spec.log.every_n_steps == 0:
                    _check(members, k_all, nonfinite, opt, epoch, step + 1, info, start, only=k)
                    if m.record is not None:  # it diverged here: its record is written, its loggers closed
                        continue
                    lr = float(lrs[min(step + 1, len(lrs) - 1), k])  # after this step, as Lightning logs it
                    m.log({"train/loss_step": float(detached[k]), "lr": lr, "epoch": epoch}, step)
        sync(device)
        seconds = time.perf_counter() - t0
        _check(members, k_all, nonfinite, opt, epoch, (epoch + 1) * per_epoch, info, start)
        warmup = epoch == done and t.epochs - epoch > 1  # as RunMonitor: the process's first epoch is warm-up
        val = evaluate(net, data["val"], batch, autocast)
        reporter.validated(val[SELECT])
        global_step = (epoch + 1) * per_epoch
        for k, m in enumerate(members):
            if m.record is not None:
                continue
            if not warmup:
                m.train_images, m.train_seconds = m.train_images + n, m.train_seconds + seconds
            entry = {"epoch": epoch, **{key: v[k] for key, v in val.items()}}
            m.train_loss = float(loss_sum[k] / per_epoch)
            m.log({"train/loss": m.train_loss, **{key: v[k] for key, v in val.items()},
                   "epoch": epoch}, global_step - 1)
            m.history = [h for h in m.history if h["epoch"] != epoch] + [entry]
            if not m.best or entry[SELECT] > m.best[SELECT]:
                m.best = entry
                best = {"epoch": epoch, "global_step": global_step, "state_dict": _model_state(net, k)}
                files.atomic_write(m.run_dir / BEST_FILE, lambda f, best=best: torch.save(best, f))
            ckpts.save_member(m.run_dir, _member_checkpoint(m, k, net, opt, epoch, global_step))
    reporter.testing()
    _finish(members, net, data, batch, autocast, dm, info, start, t.epochs * per_epoch)


def _finish(members, net, data, batch, autocast, dm, info, start, global_step) -> None:
    """Test every member's final weights (and its best epoch's, where that is not the last), time
    inference once (every member has the same shape), write the records."""
    alive = [(k, m) for k, m in enumerate(members) if m.record is None]
    if not alive:
        return
    epochs = members[0].spec.train.epochs
    final = evaluate(net, data["test"], batch, autocast, "test")
    paths = sorted(set(net.template.attention_paths()))
    best_flat = net.flat.detach().clone()
    for k, m in alive:
        if m.best and m.best["epoch"] != epochs - 1:
            state = torch.load(m.run_dir / BEST_FILE, map_location="cpu", weights_only=True)["state_dict"]
            net.load_member(k, {n.removeprefix("model."): v for n, v in state.items()}, best_flat)
    best_test = evaluate(net, data["test"], batch, autocast, "test", flat=best_flat)
    model = build_model(members[0].spec.model).to(best_flat.device)
    model.load_state_dict(net.member_state(alive[0][0]))
    images = data["test"][0][:batch]
    infer = inference_throughput(model, images, autocast=autocast, **CELL_INFER_TIMING)
    peak, kind = RunMonitor().peak_memory(best_flat.device)
    for k, m in alive:
        last = m.history[-1] if m.history else {}
        metrics = {"train/loss": m.train_loss, **{key: v for key, v in last.items() if key != "epoch"},
                   **{key: v[k] for key, v in final.items()}}
        best = dict(m.best)
        best.update({key: v[k] for key, v in (best_test if m.best["epoch"] != epochs - 1 else final).items()})
        m.log({**{key: v[k] for key, v in final.items()}, "epoch": epochs}, global_step)
        cost = {"train_img_s": m.train_images / m.train_seconds if m.train_seconds else None,
                "infer_img_s": infer, "infer_batch_size": len(images), "peak_mem_mib": round(peak, 1),
                "peak_mem_kind": kind}
        m.record = _record(m.spec, m.run_dir, status="done", wall=time.time() - start,
                           metrics=dict(sorted(metrics.items())), best=best, cost=cost,
                           attention_path="+".join(paths) if paths else "n/a", pipeline=dm.pipeline,
                           split_sizes=dm.split_sizes(), peak_lr=peak_lr(m.spec), **m.attempt, **m.tuning,
                           pack=info)
        # the trackers get the record's final numbers and close; a tracker's failure is noted, not the cell's
        tracker_errors = finish(m.loggers, m.record, global_step)
        if tracker_errors:
            m.record["tracker_errors"] = tracker_errors
        files.write_record(m.run_dir, m.record)
        ckpts.drop_previous(m.run_dir)


def _check(members, k_all, nonfinite, opt, epoch, step, info, start, only: int | None = None) -> None:
    """Record (and freeze) the members whose training loss turned non-finite (one host sync)."""
    bad = (nonfinite > 0) & opt.alive
    if only is not None:
        bad = bad & (k_all == only)
    for k in bad.nonzero().flatten().tolist():
        m = members[k]
        error = DivergedError(f"non-finite training loss at epoch {epoch}, step {step}")
        m.record = _failed(m, error, start, info)
        opt.freeze(k)


def _model_state(net: PackedModel, k: int) -> dict[str, torch.Tensor]:
    return {f"model.{n}": v for n, v in net.member_state(k).items()}


def _member_checkpoint(m: Member, k: int, net: PackedModel, opt: PackedAdamW, epoch: int, step: int) -> dict:
    return {"epoch": epoch, "global_step": step, "state_dict": _model_state(net, k),
            ckpts.PACK_KEY: {"exp_avg": net.member_state(k, opt.exp_avg),
                             "exp_avg_sq": net.member_state(k, opt.exp_avg_sq), "steps": opt.steps,
                             "history": m.history, "best": m.best, "train_images": m.train_images,
                             "train_seconds": m.train_seconds, "train_loss": m.train_loss,
                             "rng": torch.get_rng_state()}}


def _restore(members: list[Member], net: PackedModel, opt: PackedAdamW, done: int) -> None:
    """Every member's weights, moments and monitor state after `done` finished epochs."""
    for k, m in enumerate(members):
        state = ckpts.load_member(m.run_dir, done)
        pack = state[ckpts.PACK_KEY]
        net.load_member(k, {n.removeprefix("model."): v for n, v in state["state_dict"].items()})
        net.load_member(k, pack["exp_avg"], opt.exp_avg)
        net.load_member(k, pack["exp_avg_sq"], opt.exp_avg_sq)
        opt.steps = int(pack["steps"])
        m.history, m.best = list(pack["history"]), dict(pack["best"])
        m.train_images, m.train_seconds = int(pack["train_images"]), float(pack["train_seconds"])
        m.train_loss = float(pack["train_loss"])
        m.attempt["resumed_from"] = {"epoch": int(state["epoch"]), "global_step": int(state["global_step"])}
        torch.set_rng_state(pack["rng"])
