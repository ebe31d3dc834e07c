#!/usr/bin/env bash
# Run HERE after tools/device/run.sh came back from the GPU machine, with the folder the device
# tool put its $OUT files in (files_at):
#   bash tools/device/finish.sh FILES_AT [RUN]        # RUN: default runs/gpu_full (new or empty;
#                                                     # name another one, e.g. runs/gpu_continue)
# EMIDEC (default ../shared/data/emidec beside the checkout) names the data to calibrate on.
# It makes the new model the bundled one, with its own QC calibration, when it scores higher on
# val than the bundled one (best.json's best_score against the bundled sidecar's selection_score,
# both the best of their run's validations on the same 20 val cases; FORCE=1 releases it
# anyway). Otherwise it still unpacks both runs (for the evaluation) and exits with status 3:
#   1. joins best.safetensors.part-* into RUN/best.safetensors and checks its sha256 against
#      best.json (the weights' sidecar); copies best.json, log.jsonl and the run's other files;
#   2. python tools/release_weights.py RUN → ScarNetSlicer/scarnet/weights/ (fp16, sidecar);
#   3. evaluates the first 40 EMIDEC train exams and runs scarnet calibrate-qc on them;
#   4. sets the stand-ins in scarnet/qc.py (LOW_CONFIDENCE_THRESHOLD, SCAR_UNCERTAIN_THRESHOLD,
#      UNSURE_LV_THRESHOLD, UNSURE_STACK_WARNING_FRACTION) to the calibration (a test keeps them equal).
# With unet_run.tar (run.sh trains the U-Net baseline beside ScarNet) it also unpacks that run into
# RUN_unet and checks its sha256.
# Left to do by hand (commands in MODEL_CARD.md, "Evaluation"): the val evaluation with the U-Net
# baseline (RUN_unet/best.safetensors), the CPU benchmark, the model card's, README's and docs/ figures (QC flag
# shares in docs/reports.md and README "Outputs", docs/aha.md's agreement, grep the old values), the page's "About
# the model" figures (scarnet/report_html.py BUNDLED_MODEL_CARD, sha256 included: a test checks them against the card
# and the weights), pytest, the commit.
# Rehearsed on 2026-11-29 in a scratch worktree without ../shared (EMIDEC=… given, called from a
# subfolder with a relative FILES_AT), with a CPU run's files (runs/cpu_unfreeze, split as run.sh
# splits them) standing in for the GPU's: 55 s, then the whole test suite passed on the result
# (before the score gate: such a run now needs FORCE=1).
set -euo pipefail
files_at=${1:?usage: bash tools/device/finish.sh FILES_AT [RUN]}
files_at=$(cd "$files_at" && pwd)  # before the cd below: relative paths are the caller's
given_files_at=$files_at
emidec=""
if [ -n "${EMIDEC:-}" ]; then emidec=$(cd "$EMIDEC" && pwd); fi
top=$(git rev-parse --show-toplevel)
cd "$top"
run=${2:-runs/gpu_full}
emidec=${emidec:-../shared/data/emidec}
# This checkout's package, also where the environment has another one installed (editable elsewhere).
export PYTHONPATH="$top/ScarNetSlicer${PYTHONPATH:+:$PYTHONPATH}"
[ -f "$emidec/splits.json" ] || { echo "$emidec: no EMIDEC here (splits.json); set EMIDEC=FOLDER" >&2; exit 2; }

shopt -s nullglob
# run.sh packs the run's small files into scarnet_run.tar and the U-Net baseline into unet_run.tar.
if [ -f "$files_at/scarnet_run.tar" ]; then
  unpacked=$(mktemp -d)
  trap 'rm -rf "$unpacked"' EXIT
  find "$files_at" -maxdepth 1 -type f -exec cp -t "$unpacked" {} +
  tar -xf "$files_at/scarnet_run.tar" -C "$unpacked"
  chmod -R u+w "$unpacked"  # the device tool's files are read-only
  files_at=$unpacked
fi
unet_run=${run}_unet
for folder in "$run" "$unet_run"; do
  if [ -e "$folder" ] && [ -n "$(ls -A "$folder")" ]; then
    echo "$folder: exists and is not empty; name another folder" >&2; exit 2
  fi
done
# The gate, before any folder is made: does the new run beat the bundled model on val?
release=1
if [ -f "$files_at/best.json" ] && [ "${FORCE:-0}" != 1 ]; then
  set +e
  python - "$files_at/best.json" <<'PY'
import json
import sys
from pathlib import Path

from scarnet.model.registry import bundled_weights_path, sidecar_path

new = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")).get("info", {}).get("best_score")
if not isinstance(new, (int, float)):
    print(f"{sys.argv[1]}: no val score (best_score {new!r}): did the training validate?", file=sys.stderr)
    sys.exit(2)
path = bundled_weights_path()
old = json.loads(sidecar_path(path).read_text(encoding="utf-8"))["info"].get("selection_score") if path else None
print(f"val selection score (mean of myocardium and scar Dice): new {new:.4f}, bundled "
      f"{'none' if old is None else format(old, '.4f')}")
sys.exit(0 if old is None or new > old else 3)
PY
  gate=$?
  set -e
  case $gate in
    0) ;;
    3) release=0 ;;
    *) exit "$gate" ;;
  esac
fi
check_sha256() {  # RUN…: each RUN/best.safetensors against its best.json
  python - "$@" <<'PY'
import json
import sys
from pathlib import Path

from scarnet.io import sha256_of

for run in map(Path, sys.argv[1:]):
    expected = json.loads((run / "best.json").read_text(encoding="utf-8"))["sha256"]
    actual = sha256_of(run / "best.safetensors")
    if actual != expected:
        sys.exit(f"{run}/best.safetensors: sha256 {actual[:12]}… is not best.json's {expected[:12]}… (parts missing?)")
    print(f"{run}/best.safetensors: sha256 {actual} as best.json says")
PY
}
# The evaluation's U-Net baseline, trained beside it: kept even when the ScarNet run failed.
if [ -f "$files_at/unet_run.tar" ]; then
  mkdir -p "$unet_run" && tar -xf "$files_at/unet_run.tar" -C "$unet_run"
  if [ -f "$files_at/unet_train.log" ]; then cp "$files_at/unet_train.log" "$unet_run/"; fi  # (older run.sh)
  check_sha256 "$unet_run"
fi
parts=("$files_at"/best.safetensors.part-*)
[ ${#parts[@]} -gt 0 ] || { echo "$files_at: no best.safetensors.part-* (did the training finish?)" >&2; exit 2; }
for name in best.json log.jsonl; do
  [ -f "$files_at/$name" ] || { echo "$files_at: no $name" >&2; exit 2; }
done
mkdir -p "$run"
cat "${parts[@]}" > "$run/best.safetensors"
for name in best.json log.jsonl train.log bench_scarnet.json bench_scarnet_graphs.json bench.json gpu.txt gpu_paths.json; do
  if [ -f "$files_at/$name" ]; then cp "$files_at/$name" "$run/"; fi
done
check_sha256 "$run"
if [ "$release" != 1 ]; then
  echo "kept the bundled model: the new run scores no higher on val. Both runs are unpacked in $run and" \
    "$unet_run. To release it anyway: rm -rf $run $unet_run && FORCE=1 bash tools/device/finish.sh $given_files_at $run" >&2
  exit 3
fi

python tools/release_weights.py "$run" --overwrite  # replaces the bundled weights: the point of a release
scarnet evaluate --split train --max-cases 40 --skip noise artifacts contrast field thresholds medsam unet \
  --json "$run/train40.json" --device cpu --emidec "$emidec" > "$run/train40.md"
scarnet calibrate-qc "$run/train40.json"

python - <<'PY'
import json
import re
from pathlib import Path

from scarnet.model.registry import bundled_weights_path, sidecar_path

entry = json.loads(sidecar_path(bundled_weights_path()).read_text(encoding="utf-8"))["qc_calibration"]
qc = Path("ScarNetSlicer/scarnet/qc.py")
text = qc.read_text(encoding="utf-8")
for constant, key in (("LOW_CONFIDENCE_THRESHOLD", "low_confidence_threshold"),
                      ("SCAR_UNCERTAIN_THRESHOLD", "scar_uncertain_threshold"),
                      ("UNSURE_LV_THRESHOLD", "unsure_lv_threshold"),
                      ("UNSURE_STACK_WARNING_FRACTION", "stack_warning_fraction")):
    text, count = re.subn(rf"^{constant} = .*$", f"{constant} = {entry[key]!r}", text, flags=re.M)
    if count != 1:
        raise SystemExit(f"{qc}: no single '{constant} = ' line to set")
    print(f"{constant} = {entry[key]!r}")
qc.write_text(text, encoding="utf-8")
PY
echo "Done. Next: the val evaluation and the benchmark (MODEL_CARD.md, \"Evaluation\"), the figures in the model card, README and report_html.BUNDLED_MODEL_CARD, pytest."
