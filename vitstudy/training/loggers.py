"""The Lightning loggers of one cell: TensorBoard under `tb/` always (the report reads its event files),
plus the CSV, Weights & Biases and MLflow loggers that the manifest's `log.loggers` names.
"""

from __future__ import annotations

from pathlib import Path

from vitstudy.config.spec import RunSpec
from vitstudy.runfolder import TB_DIR


def build_loggers(spec: RunSpec, run_dir: Path) -> list:
    """TensorBoard under tb/ (always: the report reads it), plus the extra loggers `spec.log` names."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    log = spec.log
    loggers = [TensorBoardLogger(save_dir=run_dir, name=TB_DIR, version="", default_hp_metric=False)]
    if "csv" in log.loggers:
        loggers.append(CSVLogger(save_dir=run_dir, name="csv", version=""))
    project = log.project or spec.grid
    if "wandb" in log.loggers:
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(project=project, name=run_dir.name, id=run_dir.name, save_dir=run_dir,
                                   config=spec.model_dump(mode="json")))
    if "mlflow" in log.loggers:
        from lightning.pytorch.loggers import MLFlowLogger

        uri = log.tracking_uri or (run_dir.parent / "mlruns").resolve().as_uri()
        loggers.append(MLFlowLogger(experiment_name=project, run_name=run_dir.name, tracking_uri=uri))
    return loggers
