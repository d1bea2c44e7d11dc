"""The grid layer: how a manifest's cells run (executors: local, SLURM, Ray), cell locks, progress lines and
what `vitstudy plan` shows. Knows nothing of models."""
