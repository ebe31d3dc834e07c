#!/usr/bin/env bash
# Run ON THE GPU MACHINE through the device tool, after tools/device/prepare.sh here:
#   run(command="bash tools/device/run.sh", carry=[".device_carry"], timeout_s=600)
# In one call of at most $BUDGET_S seconds (the tool allows 600 per command):
#   0. whether the inference shortcuts give the same labels here (tools/device/check_gpu_paths.py);
#   1. speed on this GPU (`scarnet bench`, ScarNet alone, eager with bf16 weights and with float32
#      weights under autocast side by side, then with CUDA graphs: the
#      H200 model-time target; the bundled weights have the run's architecture, so the time is the
#      new model's too);
#   2. trains the full model (config gpu_full) for the time left, less what saving takes, and
#      side by side on the same GPU the evaluation's plain U-Net baseline (gpu_full_unet: the
#      same recipe without the encoder); with anneal_by_time their learning rates decay over it;
#   3. with the time still left, the benchmark side by side with the paper's configuration and
#      nnU-Net's 2D network (no peak-memory or cold-start runs: those are CPU targets).
# Results land in $OUT (≤ 8 files of ≤ 16 MiB: the weights come back split, the small files in
# two tars, see below); the trainings' validation figures (the full pipeline on EMIDEC val) are in
# their log.jsonl, train.log and (in unet_run.tar) unet_train.log.
# Then, here: `bash tools/device/finish.sh FILES_AT` joins the weights and checks their sha256,
# releases them (tools/release_weights.py runs/gpu_full, no best.pt needed), calibrates the QC
# thresholds of the new weights and puts the U-Net in runs/gpu_full_unet (see its header).
# INIT=bundled (after `INIT=bundled bash tools/device/prepare.sh`): a warm start. ScarNet starts
# from the bundled weights and the U-Net from the carried unet_init.safetensors (its last run), so
# that both get this call's minutes on top of the last ones; the configs may change the crop
# geometry (input_size, pixel_spacing_mm, encoder_input_size), not the network.
# On a CPU machine, for a dry run:
#   OUT=/tmp/out CONFIG=smoke DEVICE=cpu BUDGET_S=150 REPEATS=1 bash tools/device/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?OUT must be set (the device tool sets it)}"
BUDGET_S=${BUDGET_S:-570}  # this command's seconds in all, inside the tool's 600
SAVE_S=${SAVE_S:-90}  # the training's start (imports, data, workers) and, after its time cap, up to
                      # two validations (~17 s each on 2 CPU threads), checkpoints, weights, splitting
CONFIG=${CONFIG:-gpu_full}
# The evaluation's plain U-Net baseline: CONFIG's *_unet twin where there is one.
if [ -z "${UNET_CONFIG:-}" ] && [ -f "ScarNetSlicer/scarnet/train/configs/${CONFIG}_unet.json" ]; then
  UNET_CONFIG=${CONFIG}_unet
fi
UNET_CONFIG=${UNET_CONFIG:-gpu_full_unet}
DEVICE=${DEVICE:-cuda}
REPEATS=${REPEATS:-5}
INIT=${INIT:-}
carry=.device_carry
scarnet_init=() unet_init=()
train_unet=1
if [ "$INIT" = bundled ]; then
  scarnet_init=(--init-weights ScarNetSlicer/scarnet/weights/scarnet_litemedsam.safetensors)
  if [ -f "$carry/unet_init.safetensors" ]; then
    unet_init=(--init-weights "$carry/unet_init.safetensors")
  else  # prepare.sh found no U-Net weights to start from: ScarNet trains alone
    train_unet=0
    echo "INIT=bundled without $carry/unet_init.safetensors: the U-Net baseline is not trained this time"
  fi
elif [ -n "$INIT" ]; then
  echo "INIT=$INIT: only 'bundled' (or nothing) is known" >&2; exit 2
fi
# The continuation configs (scarnet.cli.CONTINUATION_CONFIGS, *_unet twins included) need starting
# weights: say so now, not after the benchmarks' minutes. (scarnet.cli imports only the standard library.)
if PYTHONPATH=ScarNetSlicer python3 -c 'import sys; from scarnet.cli import CONTINUATION_CONFIGS as c
sys.exit(sys.argv[1].removesuffix("_unet") not in c)' "$CONFIG" && [ "$INIT" != bundled ]; then
  echo "CONFIG=$CONFIG continues a trained model: set INIT=bundled" >&2; exit 2
fi

if ls "$carry"/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$carry"/whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD/ScarNetSlicer
else
  export PYTHONPATH=$PWD/ScarNetSlicer
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null | tee /tmp/gpu.txt || true
# ../shared is not sent: put the carried EMIDEC where the package looks (the benchmark's real volume).
if [ ! -e ../shared/data/emidec ]; then mkdir -p ../shared/data && ln -s "$PWD/$carry/emidec" ../shared/data/emidec; fi

# 1. The model time on this GPU, first, so that it is measured whatever the training does: eager
# with bf16 weights (the pipeline's way since 2026-11-29) side by side with float32 weights under
# bf16 autocast (the way before), then with the forward replayed as CUDA graphs (experimental;
# scarnet.model.graphed).
# First, whether the CPU-tested inference shortcuts (exact on the CPU; model card, "Speed and
# memory") hold here: labels and logits against the padded-window attention, CUDA graphs against
# eager. Into scarnet_run.tar (at most 8 files come back) and this command's output.
timeout 60 python3 tools/device/check_gpu_paths.py /tmp/gpu_paths.json "$DEVICE" 2>&1 | tail -20 \
  || echo "GPU path check failed or ran out of time"
timeout 90 python3 -m scarnet.bench --device "$DEVICE" --only scarnet scarnet_autocast --repeats "$REPEATS" \
  --no-memory --no-cold --json "$OUT/bench_scarnet.json" 2>&1 | tail -25 || echo "bench (ScarNet) failed or ran out of time"
timeout 60 python3 -m scarnet.bench --device "$DEVICE" --only scarnet --cuda-graphs --repeats "$REPEATS" --no-memory \
  --no-cold --json "$OUT/bench_scarnet_graphs.json" 2>&1 | tail -25 || echo "bench (CUDA graphs) failed or ran out of time"

unet_config=$UNET_CONFIG
if [ "$CONFIG" = smoke ]; then
  python3 -c "import json; from scarnet.train.loop import SMOKE_CONFIG; c = SMOKE_CONFIG.to_dict(); \
c['emidec_root'] = 'auto'; c['phantom_fraction'] = 0.3; json.dump(c, open('/tmp/smoke.json', 'w')); \
c['model']['encoder'] = 'none'; json.dump(c, open('/tmp/smoke_unet.json', 'w'))"
  CONFIG=/tmp/smoke.json unet_config=/tmp/smoke_unet.json
fi

# The encoder a run from scratch starts from: LiteMedSAM's carried, else the bundled weights' (prepare.sh found it
# unchanged there, or ENCODER=bundled). A warm start (INIT=bundled) takes it with the rest of the bundled weights.
encoder_checkpoint="$carry/lite_medsam_encoder.safetensors"
encoder_option=(--encoder-checkpoint "$encoder_checkpoint")
if [ "$INIT" = bundled ]; then
  encoder_option=()
elif [ ! -f "$encoder_checkpoint" ]; then
  # Named for what it is in the run's record (--encoder-checkpoint): the bundled weights' encoder, which is
  # LiteMedSAM's fine-tuned on EMIDEC train unless prepare.sh found it unchanged.
  encoder_checkpoint=/tmp/bundled_encoder.safetensors
  encoder_option=(--encoder-checkpoint "$encoder_checkpoint")
  echo "encoder: starting from the bundled weights' ($encoder_checkpoint)"
  python3 - "$encoder_checkpoint" <<'PY'
import sys

from safetensors.torch import load_file, save_file

from scarnet.model.registry import bundled_weights_path

state = load_file(str(bundled_weights_path()))
save_file({"image_encoder." + k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}, sys.argv[1])
PY
fi

# 2. Training for the time left: ScarNet and, side by side on the same GPU, the plain U-Net
# baseline of the evaluation with the same recipe (its config differs only in the encoder),
# each with half the CPU cores for its data workers and the same minutes (ScarNet alone: all of them).
minutes=${MINUTES:-$(python3 -c "print(round(max(1.0, ($BUDGET_S - $SECONDS - $SAVE_S) / 60), 2))")}
workers=$(( ($(nproc) - 2) / ($train_unet + 1) )); if [ "$workers" -lt 0 ]; then workers=0; fi
echo "training ScarNet$( [ "$train_unet" = 1 ] && echo " and the U-Net") for $minutes min, $workers data workers each" \
  "(after ${SECONDS} s)"
# Killed if it overruns the call, so that its best checkpoint still comes back (below; the weights
# of an earlier call are removed first, so that they are never sent back as this call's).
train_limit=$((BUDGET_S - SECONDS - 15))
if [ "$train_limit" -lt 30 ]; then train_limit=30; fi  # (timeout 0 would mean no limit at all)
train_run() {  # NAME CONFIG RUN_FOLDER LOG [train options…]
  local name=$1 config=$2 run=$3 log=$4 resume=()
  shift 4
  # A second call on the same warm machine continues the run instead of refusing its folder
  # (at the low rate where the clock ended its decay: fine-tuning).
  if [ -f "$run/last.pt" ]; then resume=(--resume); fi
  rm -f "$run/best.safetensors" "$run/best.json"
  timeout -k 20 "$train_limit" python3 -m scarnet train --config "$config" ${resume[@]+"${resume[@]}"} --out "$run" \
    --device "$DEVICE" --emidec "$carry/emidec" --workers "$workers" --max-minutes "$minutes" "$@" > "$log" 2>&1 \
    || echo "$name: training stopped early (status $?): keeping its best checkpoint" | tee -a "$log"
  if [ ! -f "$run/best.safetensors" ] && [ -f "$run/best.pt" ]; then
    python3 -c "from scarnet.train.loop import export_best_weights as export; \
print('$name: best.pt → best.safetensors, sha256', export('$run')[1])" 2>&1 | tee -a "$log"
  fi
}
train_run ScarNet "$CONFIG" /tmp/run "$OUT/train.log" ${encoder_option[@]+"${encoder_option[@]}"} \
  ${scarnet_init[@]+"${scarnet_init[@]}"} &
scarnet_pid=$!
unet_pid=""
if [ "$train_unet" = 1 ]; then
  train_run U-Net "$unet_config" /tmp/run_unet /tmp/unet_train.log ${unet_init[@]+"${unet_init[@]}"} &
  unet_pid=$!
else
  rm -rf /tmp/run_unet  # an earlier call's U-Net is not this call's
fi
wait "$scarnet_pid" || true
if [ -n "$unet_pid" ]; then wait "$unet_pid" || true; fi
tail -n 8 "$OUT/train.log" $( [ "$train_unet" = 1 ] && echo /tmp/unet_train.log )
# At most 8 files come back: the ScarNet weights in two parts, the small files in two tars.
if [ -f /tmp/run/best.safetensors ]; then
  split -b 15m /tmp/run/best.safetensors "$OUT/best.safetensors.part-"
  tar -cf "$OUT/scarnet_run.tar" -C /tmp/run best.json log.jsonl -C /tmp gpu.txt \
    $( [ -f /tmp/gpu_paths.json ] && echo gpu_paths.json )
  echo "ScarNet weights saved after ${SECONDS} s"
else
  echo "no ScarNet weights: the training stopped before its first validation"
fi
if [ -f /tmp/run_unet/best.safetensors ]; then
  tar -cf "$OUT/unet_run.tar" -C /tmp/run_unet best.safetensors best.json log.jsonl -C /tmp unet_train.log
  echo "U-Net weights saved after ${SECONDS} s"
elif [ "$train_unet" = 1 ]; then
  echo "no U-Net weights: its training stopped before its first validation"
else
  echo "U-Net not trained this call (no weights to warm-start it from)"
fi

# 3. Side by side with the reference configuration and nnU-Net, in what is left.
left=$((BUDGET_S - SECONDS - 5))
if [ "$left" -ge 30 ]; then
  timeout "$left" python3 -m scarnet.bench --device "$DEVICE" --repeats "$REPEATS" --no-memory --no-cold \
    --json "$OUT/bench.json" 2>&1 | tail -30 || echo "bench (side by side) failed or ran out of time"
else
  echo "no time left for the side-by-side benchmark"
fi
ls -la "$OUT"
echo "done after ${SECONDS} s"
