#!/usr/bin/env bash
# Check a CUDA machine in <= 8 minutes, offline: the default grid's wall time packed vs unpacked (and that
# both give the same table within seed noise), a ViT-S/16 bf16 training step's MFU eager vs torch.compile,
# and that every token mixer and score normaliser trains. Prints Markdown for the README's performance
# section; exit status 1 when a check fails. Never a test dependency; see scripts/device_check.py.
#
#   scripts/device_check.sh                                  # on a GPU machine
#   DEVICE_CHECK_EPOCHS=25 scripts/device_check.sh           # the grid's full 25 epochs (longer)
#   DEVICE_CHECK_PARTS=mfu,mixers scripts/device_check.sh    # skip the grid
#   DEVICE_CHECK_DEVICE=cpu DEVICE_CHECK_TINY=1 scripts/device_check.sh   # toy sizes: tests the script
#
# Other knobs: DEVICE_CHECK_PEAK_TFLOPS (the GPU's dense bf16 peak, when its name is not in the table),
# DEVICE_CHECK_MIN_SPEEDUP (default 10 on CUDA), DEVICE_CHECK_COMPILE_BACKEND; or pass the flags of
# `python scripts/device_check.py --help` to this script.
set -euo pipefail
cd "$(dirname "$0")/.."
# nothing is downloaded: the grid's digits ship with scikit-learn, everything else is random tensors
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
exec "${PYTHON:-python}" scripts/device_check.py "$@"
