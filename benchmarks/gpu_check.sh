#!/usr/bin/env bash
# The GPU paths that CI (no GPU) cannot run, in one command on a machine with one CUDA GPU:
#
#   bash benchmarks/gpu_check.sh [OUT]        # OUT: folder for the reports (default gpu_check/)
#
# 1. tests/test_normcore_cuda.py: every layer on CUDA against the CPU computation (contiguous and
#    channels_last), low precision and autocast, mean-1e4 inputs, the WS eval cache;
# 2. benchmarks/layers.py --device cuda: each layer's speed as a ratio to its native equivalent, at N = 64
#    (kernel time) and at N = 8 (launch overhead dominates);
# 3. the engine on the GPU: torchrun with one NCCL process (DDP on one GPU), --amp bf16, --channels-last,
#    a small GN+WS ResNet on generated ImageNet-layout data, then --resume auto of the finished run
#    (nothing left to train: it must report the saved epoch and exit cleanly) and --eval-only.
#
# Uses the python on PATH (set PYTHON to choose); it needs torch with CUDA, torchvision, pytest, pyyaml,
# tqdm and pillow. Each step's output goes to OUT/<step>.txt; the script stops at the first failure.
set -euo pipefail
OUT=${1:-gpu_check}
PY=${PYTHON:-python}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" NORMCORE_NO_PROGRESS=1

"$PY" - <<'EOF' | tee "$OUT/environment.txt"
import torch, torchvision
assert torch.cuda.is_available(), "no CUDA device: this script checks the GPU paths"
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.cuda.get_device_name()}")
EOF

"$PY" -m pytest -q -p no:randomly -p no:cacheprovider -o addopts="" tests/test_normcore_cuda.py 2>&1 | tee "$OUT/cuda_tests.txt"

"$PY" benchmarks/layers.py --device cuda --markdown > "$OUT/layers_cuda_n8.md"
"$PY" benchmarks/layers.py --device cuda --batch 64 --markdown > "$OUT/layers_cuda.md"
tail -n +1 "$OUT/layers_cuda.md" | head -3

work=$(mktemp -d)
PYTHONPATH=tests "$PY" - "$work" <<'EOF'
import sys
from pathlib import Path
from fixtures.image_folder import make_image_folder, write_config
root = Path(sys.argv[1])
make_image_folder(root / "data", classes=4, train_per_class=16, val_per_class=4)
write_config(root / "gn_ws.yaml", {  # the tiny CIFAR ResNet of TINY_CONFIG with GN+WS
    "name": "gpu_check_gn_ws",
    "model": {"norm": "gn", "norm_kwargs": {"num_groups": 4}, "conv": "ws"},
    "data": {"batch_size": 8},
    "train": {"epochs": 2, "device": "cuda"},
})
EOF
engine() {
    "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m reproductions.group_norm.train_imagenet \
        --config "$work/gn_ws.yaml" --data "$work/data" --out "$work/run" --amp bf16 --channels-last "$@"
}
{
    engine
    engine --resume auto
    engine --resume "$work/run" --eval-only
} 2>&1 | tee "$OUT/engine.txt"
rm -rf "$work"
echo "gpu_check: all steps passed; reports in $OUT/"
