#!/usr/bin/env bash
# One prepared device call: the analyzer benchmark on CUDA, then on this machine's CPU as the
# same-machine baseline. Results land in $OUT (JSON) and on stdout. Needs the project's
# Python environment (torch with CUDA, torchvision, pydicom, scipy, pydantic, pylibjpeg).
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-var/bench-out}
mkdir -p "$OUT"
"$PYTHON" -c "import torch; print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')"
"$PYTHON" -m bench.models.bench_analyzers --device cuda --studies 20 --warmup 3 --densenet121 --json "$OUT/bench-models-cuda.json"
"$PYTHON" -m bench.models.bench_analyzers --device cpu --studies 5 --warmup 1 --densenet121 --json "$OUT/bench-models-cpu-same-machine.json"
