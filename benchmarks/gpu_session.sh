#!/usr/bin/env bash
# The GPU checks and figures of one lent-GPU session, in one go (see README "Benchmarks").
# Expects: a CUDA torch on python3, the repo as cwd, a demo dataset in gpu-data/
# (`matdata build --fg demo --bg demo --size 512 --out gpu-data`), and, where dask is not
# installed, its wheels in .whl/.  Writes logs under ${OUT:-gpu-out}.
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
if ! python3 -c "import distributed" 2>/dev/null && [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
fi
step() { echo; echo "=== $*"; }
step env
python3 -c "import torch, cv2, numpy; print(torch.__version__, torch.cuda.get_device_name(), 'cv2', cv2.__version__, 'numpy', numpy.__version__)"
nproc
step "GPU tests: networks, harmonizers, predict/evaluate on cuda"
python3 -m pytest -q -p no:cacheprovider -x tests/test_harmonization_networks.py tests/test_harmonizers.py 2>&1 | tail -5
step "harmonizer throughput, CUDA, batch 1 and 8"
python3 benchmarks/harmonize_throughput.py --device cuda --images 32 --batch 1
python3 benchmarks/harmonize_throughput.py --device cuda --images 32 --batch 8 --models none,idih256,issam256,dih256,rainnet,rainnet512
step "backboned iDIH throughput, CUDA, batch 32"
python3 benchmarks/harmonize_throughput.py --device cuda --images 64 --batch 32 --models none,idih256,hrnet18s_idih256,hrnet18_idih256,hrnet18_v2p_idih256,hrnet32_idih256,deeplab_r34_idih256
step "train step, CUDA (AMP and fp32)"
python3 benchmarks/train_step.py --device cuda --steps 10 --batch 8
python3 benchmarks/train_step.py --device cuda --steps 10 --batch 8 --no-amp
step "matdata train on cuda (demo data), then predict with its checkpoint"
python3 -m matdata train --data gpu-data --out "$OUT/run" --steps 200 --batch-size 8 --image-size 512 \
  --device cuda --val-every 100 --val-batches 4 --ckpt-every 100 --log-every 50 --workers 6
python3 -m matdata evaluate --checkpoint "$OUT/run/last.pt" --data gpu-data --device cuda 2>&1 | tail -15
step "matdata harmonize on cuda (idih256, deterministic weights), 4 workers"
python3 -c "import torch; from harmonization import build_network; from harmonization.weights import deterministic_state_dict as d; torch.save(d(build_network('idih256')), '/tmp/idih.pth')"
time python3 -m matdata harmonize gpu-data --model idih256 --checkpoint /tmp/idih.pth --device cuda \
  --batch-size 8 --workers 4 --out /tmp/h-idih --no-progress
time python3 -m matdata harmonize gpu-data --model none --device cpu --workers 4 --out /tmp/h-none --no-progress
