#!/usr/bin/env bash
# Issue 12's GPU figure in one prepared run on a lent H200 (the `device` tool's `run`, repo root):
#
#   bash bench/device_h200.sh          # about 5 minutes; results under $OUT (or bench/results)
#   DEVICE=cpu N_BIG=250000 N_SMALL=20000 PREFIX=smoke_h200 bash bench/device_h200.sh   # a smoke run here
#   (PREFIX names the result files: without it a smoke run overwrites the H200's in bench/results)
#
# That machine has torch, numpy, scikit-learn and psutil but none of faiss, anywidget, umap-learn,
# open_clip or scikit-activeml, and no network: nothing is installed, the package runs from the
# checkout (PYTHONPATH), and the session path needs none of those (checked on the CPU with them
# blocked). Label -> next batch at 1M (AnchorAL from 200k rows) and 100k with the probe on CUDA,
# ours only (the peers are CPU tools; their CPU figures are in BENCHMARKS.md).
#
# s28 ran it without faiss, so AnchorAL's neighbour search there was the exact CPU scan (the map's
# colours waited for it, 223-386 ms at 1M). To measure what a user with the `faiss` extra gets, fetch
# the wheel here first (the folder is ignored by git and travels with `carry: [".whl"]`):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl faiss-cpu==1.15.1
set -uo pipefail
cd "$(dirname "$0")/.."
SITE=""
if compgen -G ".whl/*.whl" > /dev/null; then  # carried wheels (faiss-cpu): installed beside the image's packages
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && SITE=":/tmp/site"
fi
export PYTHONPATH="$PWD:$PWD/bench$SITE" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT="${OUT:-bench/results}"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi"; } \
    | tee "$OUT/${PREFIX:-device_h200}_gpu.txt"
"$PY" -c "import torch, alwidget.session, alwidget.ann as a; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'faiss', a.available())" \
    2>&1 | tee -a "$OUT/${PREFIX:-device_h200}_gpu.txt"
run() {  # name, args...: one bench_latency run, its tables copied to $OUT
    local name=$1; shift
    timeout 240 "$PY" bench/bench_latency.py --device "$DEVICE" --no-peer --warmup 50 --labels 30 --wait-index --out "$name" "$@" 2>&1 \
        | tr '\r' '\n' | grep -v 'it/s' | tee "$OUT/$name.log"
    [ "$OUT" -ef bench/results ] || cp -f "bench/results/$name.md" "bench/results/$name.json" "$OUT/"
}
P="${PREFIX:-device_h200}"
run "${P}_1m" --n "${N_BIG:-1000000}" --strategies margin,dropquery,auto
run "${P}_100k" --n "${N_SMALL:-100000}" --strategies margin,dropquery
