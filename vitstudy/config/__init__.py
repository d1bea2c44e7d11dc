"""The config layer, torch-free: run specs and their hashes, presets, recipes, phase rules and manifests
(YAML → validated, expanded cells). The only layer that reads YAML; `plan` and validation need nothing
else."""
