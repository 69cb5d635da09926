#!/usr/bin/env bash
# The Pets-12k GPU study (benchmarks/pets12k-gpu.toml) on a machine with its own PyTorch and CUDA:
# nothing is installed (numpy, scikit-learn, pillow, safetensors, tqdm and matplotlib must be
# there); the photos travel with the command, e.g. on a lent GPU, from the repository root:
#   mkdir -p .gpu-data && cp -r ../shared/data/pets64 .gpu-data/      # here, once; .gpu-data is ignored
#   bash benchmarks/gpu_pets12k.sh .gpu-data/pets64 "$OUT/pets12k-gpu"   # there, carrying .gpu-data
# Further arguments go to `sgan sweep` (the test runs it on the CPU at a tiny size that way).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
    echo "usage: bash benchmarks/gpu_pets12k.sh PETS64_FOLDER OUT_FOLDER [sgan sweep flags]" >&2
    exit 2
fi
data=$1 out=$2
shift 2
python=${PYTHON:-python3}
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
start=$(date +%s)
PYTHONPATH=src "$python" -m sgan sweep --config benchmarks/pets12k-gpu.toml --data "$data" --out "$out" "$@"
echo "minutes: $(( ($(date +%s) - start) / 60 )) ($(( $(date +%s) - start )) s)"
