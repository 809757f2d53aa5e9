#!/usr/bin/env bash
# The GPU checks and figures of one lent-GPU session, in one go (see README "Benchmarks").
# Expects: a CUDA torch on python3, the repo as cwd, a demo dataset in gpu-data/
# (`matdata build --fg demo --bg demo --size 512 --out gpu-data`), and, where dask is not
# installed, its wheels in .whl/.  Writes logs under ${OUT:-gpu-out}.
# Every step has its own time limit; the whole script stays under 8 minutes on an H200
# (limits add up to about 7.5 minutes; a step that hits its limit prints "TIMED OUT").
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/inductor-cache}
if ! python3 -c "import distributed" 2>/dev/null && [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
fi
step() { echo; echo "=== $* ($(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg))"; }
limit() { local s=$1; shift; timeout "$s" "$@"; local rc=$?; [ $rc -eq 124 ] && echo "TIMED OUT after ${s}s: $*"; return $rc; }
step env
python3 -c "import torch, cv2, numpy; print(torch.__version__, torch.cuda.get_device_name(), 'cv2', cv2.__version__, 'numpy', numpy.__version__)"
nproc

step "GPU tests: networks, harmonizers (cuda where available)"
limit 60 python3 -m pytest -q -p no:cacheprovider -x tests/test_harmonization_networks.py tests/test_harmonizers.py 2>&1 | tail -3

step "train step per speed configuration vs bare fp32 fwd+bwd (batch 8, 512 px); loss vs fp32 checks fp16/bf16/NHWC/fused"
# today = fp16 AMP batch 8 unfused (103 samples/s in the last GPU session); target: best >= 4x today
limit 240 python3 benchmarks/train_configs.py --device cuda --size 512 --floor-batch 8 \
  --steps 5 --rounds 3 --warmup 3 --json "$OUT/train_configs.json"

step "matdata train, recommended configuration without compile (bf16, NHWC, fused, batch 32): loader wait"
limit 100 python3 -m matdata train --data gpu-data --out "$OUT/run" --steps 120 --batch-size 32 \
  --image-size 512 --device cuda --precision bf16 --channels-last --fused --workers "$(( $(nproc) - 2 ))" \
  --val-every 0 --val-limit 64 --ckpt-every 0 --log-every 1 2>&1 | tail -4
python3 - "$OUT/run" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
t = [r for r in rows if r.get("kind") == "train" and r["step"] > 10]
if t:
    step = statistics.median(r["step_time"] for r in t)
    wait = statistics.median(r["data_time"] for r in t)
    print(f"steps {len(t)}: median step {step:.4f} s = {32 / step:.0f} samples/s; loader wait "
          f"{wait:.4f} s = {100 * wait / step:.1f}% of the step (target < 10%)")
print(json.load(open(sys.argv[1] + "/config.json")).get("resolved"))
EOF
limit 30 python3 -m matdata evaluate --checkpoint "$OUT/run/last.pt" --data gpu-data --device cuda 2>&1 | tail -6

step "harmonize shard task end to end vs network only, batch 32, 256 images 800x600"
limit 100 python3 benchmarks/harmonize_throughput.py --end-to-end --device cuda --batch 32 \
  --images 256 --models idih256,rainnet --repeats 2

step "matdata harmonize on cuda (idih256, deterministic weights, batch 32, default io threads)"
python3 -c "import torch; from harmonization import build_network; from harmonization.weights import deterministic_state_dict as d; torch.save(d(build_network('idih256')), '/tmp/idih.pth')"
time limit 60 python3 -m matdata harmonize gpu-data --model idih256 --checkpoint /tmp/idih.pth --device cuda \
  --batch-size 32 --workers 2 --out /tmp/h-idih --no-progress
echo; echo "=== done ($(date +%T))"
