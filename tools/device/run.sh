#!/usr/bin/env bash
# Run ON THE GPU MACHINE through the device tool, after tools/device/prepare.sh here:
#   run(command="bash tools/device/run.sh", carry=[".device_carry"], timeout_s=600)
# Trains the full model (config gpu_full, capped at $MINUTES), evaluates it on EMIDEC val,
# benchmarks it on the GPU, and leaves results in $OUT (≤ 8 files of ≤ 16 MiB: the weights
# come back split; join them with `cat best.safetensors.part-* > best.safetensors` and check
# the sha256 printed in train.log). Then, here: `bash tools/device/finish.sh FILES_AT` does that,
# releases the weights (tools/release_weights.py runs/gpu_full, no best.pt needed) and calibrates
# the QC thresholds of the new weights (see its header).
# On a CPU machine, for a dry run:
#   OUT=/tmp/out CONFIG=smoke DEVICE=cpu EVAL_ARGS="--max-cases 2" BENCH_ARGS="--only scarnet --repeats 1" \
#     bash tools/device/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?OUT must be set (the device tool sets it)}"
MINUTES=${MINUTES:-7}
CONFIG=${CONFIG:-gpu_full}
DEVICE=${DEVICE:-cuda}
EVAL_ARGS=${EVAL_ARGS:-}
BENCH_ARGS=${BENCH_ARGS:---repeats 5}
carry=.device_carry

if ls "$carry"/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$carry"/whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD/ScarNetSlicer
else
  export PYTHONPATH=$PWD/ScarNetSlicer
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null | tee "$OUT/gpu.txt" || true

config_args=(--config "$CONFIG")
if [ "$CONFIG" = smoke ]; then
  python3 -c "import json; from scarnet.train.loop import SMOKE_CONFIG; c = SMOKE_CONFIG.to_dict(); \
c['emidec_root'] = 'auto'; c['phantom_fraction'] = 0.3; json.dump(c, open('/tmp/smoke.json', 'w'))"
  config_args=(--config /tmp/smoke.json)
fi

encoder_checkpoint="$carry/lite_medsam_encoder.safetensors"
if [ ! -f "$encoder_checkpoint" ]; then  # prepare.sh found it unchanged in the bundled weights
  encoder_checkpoint=/tmp/lite_medsam_encoder.safetensors
  python3 - "$encoder_checkpoint" <<'PY'
import sys

from safetensors.torch import load_file, save_file

from scarnet.model.registry import bundled_weights_path

state = load_file(str(bundled_weights_path()))
save_file({"image_encoder." + k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}, sys.argv[1])
PY
fi

# A second call on the same warm machine continues the run instead of refusing its folder.
resume_args=()
if [ -f /tmp/run/last.pt ]; then resume_args=(--resume); fi
python3 -m scarnet train "${config_args[@]}" ${resume_args[@]+"${resume_args[@]}"} --out /tmp/run --device "$DEVICE" --emidec "$carry/emidec" \
  --encoder-checkpoint "$encoder_checkpoint" --max-minutes "$MINUTES" 2>&1 \
  | tee "$OUT/train.log"
cp /tmp/run/log.jsonl /tmp/run/best.json "$OUT/"
split -b 15m /tmp/run/best.safetensors "$OUT/best.safetensors.part-"

# Validation figures of the selected checkpoint (full pipeline), then speed on this GPU.
python3 -m scarnet evaluate --weights /tmp/run/best.safetensors --emidec "$carry/emidec" --device "$DEVICE" \
  --skip medsam noise artifacts --json "$OUT/eval_val.json" $EVAL_ARGS 2>&1 | tail -40 || echo "evaluate failed"
python3 -m scarnet bench --device "$DEVICE" $BENCH_ARGS \
  --json "$OUT/bench.json" 2>&1 | tail -40 || echo "bench failed"
ls -la "$OUT"
