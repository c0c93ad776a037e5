"""LIPE non-rigid editing on the tiny model (CPU, 64 px): inversion, attention masks, blending, composite.

The trained folder is `tiny_lora_folder` (conftest): random peft LoRA layers and token
embeddings written through artifacts.write_artifacts, i.e. diffusers' save_lora_weights,
and applied with artifacts.load_trained, the path every trained model takes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from personalization import edit
from personalization.attention import AttentionController, attention_control, token_positions
from personalization.cli import main
from personalization.dataset import PreparedDataset
from personalization.generate import GenerationSettings, HiresSettings, generate, load_generator
from personalization.progress import StepProgress
from personalization.prompts import PRESETS, PromptError, preset_prompt
from personalization.training import TrainConfig, train
from tests.personalization.conftest import FACES

SOURCE = "a photo of <sks> person, neutral expression, looking at the camera"
TARGET = "a photo of <sks> person, smiling with teeth, looking at the camera"


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    # Not a multiple of the working size: the result is resized back and composited at 80x96.
    return Image.open(FACES / "obama.jpg").convert("RGB").resize((80, 96), Image.Resampling.LANCZOS)


@pytest.fixture(scope="module")
def pipe(tiny_lora_folder: Path) -> Any:
    """The tiny pipeline with the trained folder applied, loaded as every trained model is.

    Its VAE scaling factor comes from the tiny builder (1 / std of its latents), so the
    latents are unit-variance here as everywhere else.
    """
    loaded, _ = load_generator(tiny_lora_folder, device="cpu")
    return loaded


def _settings(**overrides: Any) -> edit.EditSettings:
    values: dict[str, Any] = {
        "source_prompt": SOURCE,
        "target_prompt": TARGET,
        "identifier": "<sks>",
        "steps": 6,
        "mask_steps": 2,
        "mask_threshold": 0.6,
        "dilate_px": 1,
        "feather_px": 2,
        "resolution": 64,
    }
    values.update(overrides)
    return edit.EditSettings(**values)


def test_inversion_then_reconstruction_returns_the_photo_latent(pipe: Any, photo: Image.Image) -> None:
    """Bound: relative L2 error under 0.15 with 20 DDIM steps and 3 fixed-point refinements.

    The latents are unit-variance (the tiny builder's calibrated scaling factor), as on a real
    model; the remaining difficulty is the random tiny UNet, whose noise prediction changes fast
    with its input, which plain DDIM inversion assumes it does not. Each refinement re-predicts
    the noise at the current guess of the noisier latent. Measured at 20 steps: plain 0.98,
    1 refinement 0.40, 2 refinements 0.18, 3 refinements 0.07, hence 3. Plain inversion must
    still beat a start from fresh noise (~9).
    """
    refined = edit.invert(pipe, photo, SOURCE, "<sks>", steps=20, resolution=64, refinements=3)
    original = refined.trajectory[-1]
    assert len(refined.trajectory) == 21 and original.shape == (1, 4, 32, 28)

    def error(latent: torch.Tensor) -> float:
        return float((latent - original).norm() / original.norm())

    refined_error = error(edit.reconstruct(pipe, refined))
    assert refined_error < 0.15

    plain = edit.invert(pipe, photo, SOURCE, "<sks>", steps=20, resolution=64)
    plain_error = error(edit.reconstruct(pipe, plain))
    fresh = edit.Inversion(
        [torch.randn(original.shape, generator=torch.Generator().manual_seed(0)), *plain.trajectory[1:]],
        plain.timesteps,
        plain.subject_maps,
        plain.prompt,
        plain.working_size,
    )
    assert refined_error < plain_error < error(edit.reconstruct(pipe, fresh))


def test_attention_capture_shapes_per_layer_and_a_non_empty_mask(pipe: Any) -> None:
    latent = torch.randn(2, 4, 32, 28, generator=torch.Generator().manual_seed(0))
    prompts = [SOURCE, "a photo of a man, <sks> person"]
    embeds = torch.cat([pipe.encode_prompt(p, "cpu", 1, False)[0] for p in prompts])
    positions = [token_positions(pipe.tokenizer, p, "<sks>") for p in prompts]
    assert positions[0] != positions[1] and all(len(p) == 1 for p in positions)
    controller = AttentionController(latent_size=(32, 28), capture={0: positions[0], 1: positions[1]})
    with attention_control(pipe.unet, controller), torch.no_grad():
        pipe.unet(latent, 500, encoder_hidden_states=embeds)
    maps = controller.maps()
    cross_layers = {name for name, _ in pipe.unet.named_modules() if name.endswith("attn2")}
    assert set(maps) == cross_layers
    levels = len(pipe.unet.config.block_out_channels)
    for name, layer_maps in maps.items():
        block, index = name.split(".")[0], int(name.split(".")[1]) if not name.startswith("mid") else 0
        level = {"down_blocks": index, "mid_block": levels - 1, "up_blocks": levels - 1 - index}[block]
        side = (32 // 2**level, 28 // 2**level)
        assert layer_maps.shape == (2, *side), name
        # Probabilities of one token out of 77 over each pixel: between 0 and 1.
        assert float(layer_maps.min()) >= 0.0 and float(layer_maps.max()) <= 1.0
    mask = edit.attention_mask({name: m[0] for name, m in maps.items()}, (32, 28), 0.5)
    assert mask.shape == (32, 28) and 0 < mask.sum() < mask.size


def test_capture_is_removed_after_use_so_plain_inference_pays_nothing(pipe: Any) -> None:
    before = {
        name: module.processor for name, module in pipe.unet.named_modules() if hasattr(module, "processor")
    }
    latent = torch.randn(1, 4, 32, 28, generator=torch.Generator().manual_seed(1))
    embeds = pipe.encode_prompt(SOURCE, "cpu", 1, False)[0]
    with torch.no_grad():
        plain = pipe.unet(latent, 300, encoder_hidden_states=embeds).sample
        controller = AttentionController(latent_size=(32, 28))
        with attention_control(pipe.unet, controller):
            idle = pipe.unet(latent, 300, encoder_hidden_states=embeds).sample
            controller.capture = {0: token_positions(pipe.tokenizer, SOURCE, "<sks>")}
            capturing = pipe.unet(latent, 300, encoder_hidden_states=embeds).sample
    after = {
        name: module.processor for name, module in pipe.unet.named_modules() if hasattr(module, "processor")
    }
    assert all(after[name] is before[name] for name in before)
    assert torch.equal(plain, idle)  # inside the block with nothing switched on: the stock processors ran
    assert torch.allclose(plain, capturing, atol=1e-5)  # capture reads the attention, it does not change it
    assert controller.maps()


def test_empty_mask_returns_the_input_and_a_full_mask_changes_it(pipe: Any, photo: Image.Image) -> None:
    source = np.asarray(photo)
    empty = edit.edit_image(
        pipe, photo, _settings(user_mask=np.zeros((96, 80), dtype=bool), user_mask_mode="replace")
    )
    assert np.array_equal(np.asarray(empty.image), source)
    assert np.asarray(empty.region).max() == 0
    assert empty.subject_mask is None and empty.target_mask is None

    full = edit.edit_image(
        pipe, photo, _settings(user_mask=np.ones((96, 80), dtype=bool), user_mask_mode="replace")
    )
    changed = (np.asarray(full.image) != source).any(axis=2)
    assert changed.mean() > 0.5
    assert np.abs(np.asarray(full.image).astype(int) - source).mean() > 5


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"blend_start": 2},  # the window opens after the mask steps: they are not run twice
        {"masactrl": True, "masactrl_start_step": 1, "masactrl_start_layer": 2},
        {"guidance": 1.0},
        # Unset margins scale with the working size: at 64 px they still leave a background.
        {"dilate_px": None, "feather_px": None},
    ],
    ids=["default", "late-window", "masactrl", "no-guidance", "proportional-margins"],
)
def test_every_pixel_outside_the_region_is_the_input(
    pipe: Any, photo: Image.Image, overrides: dict[str, Any]
) -> None:
    result = edit.edit_image(pipe, photo, _settings(**overrides))
    source, output = np.asarray(photo), np.asarray(result.image)
    region = np.asarray(result.region) > 0
    assert output.shape == source.shape
    assert 0 < region.sum() < region.size
    assert np.array_equal(output[~region], source[~region])
    assert (output[region] != source[region]).any()
    for mask in (result.subject_mask, result.target_mask):
        assert mask is not None and mask.size == photo.size
        assert (np.asarray(mask) > 0).sum() > 0


@pytest.mark.parametrize("cropped", [False, True], ids=["whole-photo", "crop"])
def test_outside_the_latent_mask_the_edit_follows_the_source_trajectory_at_every_blended_step(
    pipe: Any, photo: Image.Image, large_photo: Image.Image, cropped: bool
) -> None:
    """The latent blend itself. The pixel test above builds its region from the weight the
    composite uses, so it passes even if the blend does nothing; here the target branch's latent
    after every step (edit_image's on_latent hook) is compared, outside the latent mask, with the
    source trajectory: the inversion of the crop the edit ran on, made again here (DDIM
    inversion is deterministic). Inside the blend window [1, 5) it must be that trajectory exactly;
    before and after the window it is not blended, so it must differ. On the small photo the crop
    is the whole photo; on the large one, a painted mask keeps the region inside a crop."""
    latents: dict[int, torch.Tensor] = {}

    def keep(phase: str, step: int, latent: torch.Tensor) -> None:
        if phase == "edit":
            latents[step] = latent.clone()

    picture, user = photo, None
    if cropped:
        picture, user = large_photo, np.zeros(large_photo.size[::-1], dtype=bool)
        user[250:550, 300:600] = True
    settings = _settings(blend_start=1, blend_end=5, user_mask=user)
    result = edit.edit_image(pipe, picture, settings, on_latent=keep)
    assert result.crop.covers(picture.size) is not cropped
    source = edit.invert(pipe, picture.crop(result.crop.box), SOURCE, "<sks>", steps=6, resolution=64)
    outside = (result.latent_mask == 0).expand_as(result.latent)
    assert 0 < int(outside.sum()) < outside.numel()
    assert sorted(latents) == list(range(6))
    for step, latent in latents.items():
        follows = torch.equal(latent[outside], source.trajectory[step + 1][outside])
        assert follows == (1 <= step < 5), step
        assert not torch.equal(latent[~outside], source.trajectory[step + 1][~outside]), step
    assert torch.equal(latents[5], result.latent)


@pytest.fixture(scope="module")
def large_photo() -> Image.Image:
    """A photo far larger than the working size (910x1137 against the tiny model's 64 px)."""
    return Image.open(FACES / "obama.jpg").convert("RGB")


def _sharpness(pixels: np.ndarray, where: np.ndarray) -> float:
    """Mean gradient magnitude (grey levels per pixel) over `where`: a region scaled up k times
    has about 1/k of the gradient it had at its own resolution."""
    grey = pixels.astype(np.float64).mean(axis=2)
    rows, cols = np.gradient(grey)
    return float(np.hypot(rows, cols)[where].mean())


@pytest.mark.parametrize(
    ("region", "box"),
    [
        ((300, 340, 420, 460), (408, 288, 472, 352)),  # fits: the working side, centred, at scale 1
        ((0, 20, 890, 910), (846, 0, 910, 64)),  # at the photo's corner: moved inside, cut at its edge
        ((200, 700, 200, 600), (72, 74, 728, 826)),  # larger: the region and a quarter of it around
        ((100, 1100, 300, 400), (0, 0, 910, 1137)),  # as long as the photo: the whole photo
        (None, (0, 0, 910, 1137)),  # nothing to edit
    ],
    ids=["fits", "corner", "larger", "photo-long", "empty"],
)
def test_the_crop_holds_the_whole_region_inside_the_photo(
    pipe: Any, region: tuple[int, int, int, int] | None, box: tuple[int, int, int, int]
) -> None:
    """Regions as (top, bottom, left, right) on a 910x1137 photo at the tiny model's 64 px."""
    weight = np.zeros((1137, 910))
    if region is not None:
        top, bottom, left, right = region
        weight[top:bottom, left:right] = 0.5
    crop = edit.choose_crop(pipe, weight, 64)
    assert crop.box == box
    assert (np.asarray(crop.cut(weight) > 0).sum()) == (weight > 0).sum()


def test_a_small_region_of_a_large_photo_is_edited_at_the_photos_resolution(
    pipe: Any, large_photo: Image.Image
) -> None:
    """The region fits the working size, so it is edited on a window of the photo at scale 1, not
    with the whole photo scaled down to 64 px and the result scaled back up (the old path, run here
    on the same photo for its figure): the edited pixels are as sharp as the model's own output."""
    width, height = large_photo.size
    user = np.zeros((height, width), dtype=bool)
    user[300:340, 420:460] = True
    flat = {"user_mask_mode": "replace", "steps": 4, "dilate_px": 0, "feather_px": 0}
    result = edit.edit_image(pipe, large_photo, _settings(user_mask=user, **flat))
    source, output = np.asarray(large_photo), np.asarray(result.image)
    region = np.asarray(result.region) > 0
    assert np.array_equal(region, user)
    assert np.array_equal(output[~region], source[~region])
    assert (output[region] != source[region]).any()
    assert result.crop.scale == 1.0 and not result.crop.downscaled
    left, top, right, bottom = result.crop.box
    assert (right - left, bottom - top) == (64, 64)
    assert left <= 420 and top <= 300 and right >= 460 and bottom >= 340

    working_height, working_width = edit.working_size(pipe, large_photo.size, 64)
    scaled = large_photo.resize((working_width, working_height), Image.Resampling.LANCZOS)
    everything = np.ones((working_height, working_width), dtype=bool)
    whole = edit.edit_image(pipe, scaled, _settings(user_mask=everything, **flat))
    scaled_back = np.asarray(whole.image.resize(large_photo.size, Image.Resampling.LANCZOS))
    at_working_size = _sharpness(np.asarray(whole.image), everything)
    # Inside the region's edge: the jump from edited to untouched pixels is no measure of sharpness.
    interior = ndimage.binary_erosion(user)
    assert _sharpness(output, interior) > at_working_size / 2 > _sharpness(scaled_back, interior)


def test_a_region_larger_than_the_working_size_is_edited_downscaled_and_says_so(
    pipe: Any, large_photo: Image.Image
) -> None:
    width, height = large_photo.size
    user = np.zeros((height, width), dtype=bool)
    user[200:700, 200:600] = True
    result = edit.edit_image(
        pipe, large_photo, _settings(user_mask=user, user_mask_mode="replace", steps=2, mask_steps=1)
    )
    assert result.crop.downscaled and result.crop.scale < 1.0
    left, top, right, bottom = result.crop.box
    assert left <= 200 and top <= 200 and right >= 600 and bottom >= 700
    assert (right - left, bottom - top) != large_photo.size
    region = np.asarray(result.region) > 0
    assert np.array_equal(np.asarray(result.image)[~region], np.asarray(large_photo)[~region])


def test_the_masks_are_read_on_the_whole_photo_and_the_edit_runs_on_a_window_around_the_region(
    pipe: Any, large_photo: Image.Image
) -> None:
    """With automatic masks the region is only known after the whole photo's inversion and mask
    steps; a window smaller than the photo is then inverted on its own and edited."""
    width, height = large_photo.size
    user = np.zeros((height, width), dtype=bool)
    user[250:550, 300:600] = True
    events: list[StepProgress] = []

    def record(event: StepProgress) -> None:
        events.append(event)

    result = edit.edit_image(
        pipe, large_photo, _settings(user_mask=user, steps=4, mask_steps=2), progress=record
    )
    assert [event.phase for event in events] == ["invert"] * 4 + ["mask"] * 2 + ["invert"] * 4 + ["edit"] * 4
    assert [event.step for event in events] == list(range(1, 15)) and events[-1].total == 14
    assert not result.crop.covers(large_photo.size)
    region = np.asarray(result.region) > 0
    assert region.any() and not region[~user].any()
    assert np.array_equal(np.asarray(result.image)[~region], np.asarray(large_photo)[~region])
    assert result.subject_mask is not None and result.subject_mask.size == large_photo.size


def test_mutual_self_attention_changes_the_edit(pipe: Any, photo: Image.Image) -> None:
    plain = edit.edit_image(pipe, photo, _settings())
    mutual = edit.edit_image(
        pipe, photo, _settings(masactrl=True, masactrl_start_step=1, masactrl_start_layer=2)
    )
    assert not torch.allclose(plain.latent, mutual.latent)


def test_a_user_mask_restricts_the_edit_to_it(pipe: Any, photo: Image.Image) -> None:
    user = np.zeros((96, 80), dtype=bool)
    user[10:60, 15:70] = True
    for mode in ("constrain", "replace"):
        result = edit.edit_image(pipe, photo, _settings(user_mask=user, user_mask_mode=mode))
        source, output = np.asarray(photo), np.asarray(result.image)
        region = np.asarray(result.region) > 0
        assert not region[~user].any(), mode
        assert np.array_equal(output[~user], source[~user]), mode
        assert (output[user] != source[user]).any(), mode


def test_bad_requests_are_refused_with_a_reason(pipe: Any, photo: Image.Image) -> None:
    with pytest.raises(edit.EditError, match="target prompt must name the subject"):
        edit.edit_image(pipe, photo, _settings(target_prompt="a photo of a person smiling"))
    with pytest.raises(edit.EditError, match="blend window"):
        edit.edit_image(pipe, photo, _settings(blend_start=5, blend_end=3))
    with pytest.raises(edit.EditError, match="mask_steps"):
        edit.edit_image(pipe, photo, _settings(mask_steps=7))
    with pytest.raises(edit.EditError, match="80x96"):
        edit.edit_image(pipe, photo, _settings(user_mask=np.ones((10, 10), dtype=bool)))


def test_presets_rewrite_the_source_prompt() -> None:
    assert preset_prompt(SOURCE, "smile", "<sks>") == (
        "a photo of <sks> person, looking at the camera, smiling with teeth"
    )
    assert preset_prompt(SOURCE, "look-left", "<sks>") == (
        "a photo of <sks> person, neutral expression, looking to the left"
    )
    turned = "a photo of <sks> person, head turned to the right, outdoors"
    assert preset_prompt(turned, "face-camera", "<sks>") == (
        "a photo of <sks> person, outdoors, head facing the camera, looking at the camera"
    )
    for name in PRESETS:
        target = preset_prompt(SOURCE, name, "<sks>")
        assert target.startswith("a photo of <sks> person") and target != SOURCE
    with pytest.raises(PromptError, match="unknown preset"):
        preset_prompt(SOURCE, "wink", "<sks>")


def test_edit_and_score_from_the_command_line(
    tiny_lora_folder: Path,
    photo: Image.Image,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The CLI (run in-process: same parser and commands) edits with the manifest's identifier,
    writes the masks beside the result, and `score` reads them back."""
    monkeypatch.delenv("LIKENESS_CLIP_MODEL", raising=False)  # no CLIP model: the score says unavailable
    photo_path = tmp_path / "photo.png"
    photo.save(photo_path)
    out = tmp_path / "edited" / "smile.png"
    common = ["edit", "--model", str(tiny_lora_folder), "--image", str(photo_path), "--out", str(out)]
    common += ["--steps", "4", "--mask-steps", "2", "--resolution", "64"]
    masking = ["--dilate", "1", "--feather", "2", "--mask-threshold", "0.6"]
    assert main([*common, "--preset", "smile", *masking]) == 0
    record = json.loads(out.with_name("smile.json").read_text())
    assert record["settings"]["identifier"] == "<sks>"
    assert record["settings"]["source_prompt"] == "a photo of <sks> person"
    assert record["settings"]["target_prompt"] == "a photo of <sks> person, smiling with teeth"
    left, top, right, bottom = record["crop"]["box"]
    assert 0 <= left < right <= 80 and 0 <= top < bottom <= 96 and record["crop"]["scale"] > 0
    for name in ("smile.region.png", "smile.subject-mask.png", "smile.target-mask.png"):
        assert (out.parent / name).is_file()
    capsys.readouterr()

    region = out.with_name("smile.region.png")
    score = ["score", "--image", str(out), "--original", str(photo_path), "--region", str(region)]
    assert main([*score, "--prompt", "a smiling person"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["background"]["identical_fraction"] == 1.0 and report["background"]["psnr"] == "inf"
    assert report["clip"]["available"] is False and report["clip"]["value"] is None
    assert report["clip"]["reason"] == "no CLIP model configured"

    assert main([*common, "--target-prompt", "a smiling man"]) == 2
    assert "must name the subject" in capsys.readouterr().err
    assert main(["score", "--image", str(out), "--original", str(photo_path)]) == 2
    assert "needs both --original and --region" in capsys.readouterr().err


def test_a_folder_from_the_trainer_generates_in_style_and_edits(
    tiny_sd: Path,
    prepared_source: PreparedDataset,
    prepared_style: PreparedDataset,
    photo: Image.Image,
    tmp_path: Path,
) -> None:
    """End to end with a real (4-step) MagiCapture training run: the folder the trainer writes
    is what generation and editing read, tokens and scales included."""
    config = TrainConfig(
        method="multiconcept",
        base_model=str(tiny_sd),
        images=prepared_source.root,
        style_images=prepared_style.root,
        out=tmp_path / "trained",
        steps=4,
        phase1_steps=2,
        checkpoint_every=0,
        validation_repeats=0,
    )
    result = train(config)
    assert result.status == "completed" and result.manifest is not None
    pipe, manifest = load_generator(result.out_dir, device="cpu")
    identity, style = manifest.tokens["identity"], manifest.tokens["style"]
    portraits = generate(pipe, manifest, GenerationSettings(style="style", steps=3, count=2))
    assert portraits.prompt == f"a photo of {identity} {manifest.class_word} in the {style} style"
    assert len(portraits.images) == 2

    source = f"a photo of {identity} {manifest.class_word}"
    target = preset_prompt(source, "smile", identity)
    edited = edit.edit_image(
        pipe, photo, _settings(source_prompt=source, target_prompt=target, identifier=identity)
    )
    region = np.asarray(edited.region) > 0
    assert 0 < region.sum() < region.size
    assert np.array_equal(np.asarray(edited.image)[~region], np.asarray(photo)[~region])


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_bf16_pipelines_the_gpu_default_generate_and_edit(
    kind: str, tiny_lora_folder: Path, tiny_xl_lora_folder: Path, photo: Image.Image
) -> None:
    """GPUs load pipelines in bf16 by default; CI has none, so the bf16 dtype path runs here on CPU:
    the SD 1.5 second pass, inversion, attention masks, mutual self-attention and the composite."""
    folder = tiny_lora_folder if kind == "sd15" else tiny_xl_lora_folder
    pipe, manifest = load_generator(folder, device="cpu", dtype=torch.bfloat16)
    assert pipe.unet.dtype == torch.bfloat16
    hires = HiresSettings() if kind == "sd15" else None
    generated = generate(
        pipe, manifest, GenerationSettings(steps=2, count=2, width=64, height=64, hires=hires)
    )
    expected = 128 if kind == "sd15" else 64
    assert [image.size for image in generated.images] == [(expected, expected)] * 2
    assert all(np.asarray(image).std() > 0 for image in generated.images)
    result = edit.edit_image(pipe, photo, _settings(masactrl=True, masactrl_start_step=1, mask_threshold=0.7))
    source, output = np.asarray(photo), np.asarray(result.image)
    region = np.asarray(result.region) > 0
    assert 0 < region.sum() < region.size
    assert np.array_equal(output[~region], source[~region])
    assert (output[region] != source[region]).any()
