"""Named presets and their validated overrides: one function serves the CLI and the Django jobs."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from personalization.dataset import PreparedDataset
from personalization.generate import GenerationSettings
from personalization.models import ModelLoadError, native_resolution
from personalization.presets import (
    PRESET_NAMES,
    TRAINING_BOUNDS,
    PresetError,
    resolve_generation,
    resolve_training,
)
from personalization.training import TrainConfig, Trainer, TrainingError
from tests.personalization.conftest import identity_train_args

METHODS = ("identity", "multiconcept")


def _config(**values: object) -> TrainConfig:
    return TrainConfig(base_model="unused", images=Path("unused"), out=Path("unused"), **values)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", METHODS)
def test_standard_is_the_methods_defaults(method: str) -> None:
    """`standard` trains exactly what TrainConfig does when nothing is set (today's method defaults);
    only the preview cadence differs, which changes no trained number."""
    standard = _config(**resolve_training(method, "standard", base_resolution=512).config_kwargs())
    default = _config(method=method)
    ignored = {"preview_every", "preview_steps", "checkpoint_every", "keep_checkpoints"}
    assert {k: v for k, v in standard.hyperparameters().items() if k not in ignored} == {
        k: v for k, v in default.hyperparameters().items() if k not in ignored
    }
    assert standard.checkpoint_every == default.checkpoint_every
    assert standard.total_steps() == (800 if method == "identity" else 2700)
    assert standard.embedding_steps() == (0 if method == "identity" else 1200)


def test_prior_preservation_is_the_identity_methods_default() -> None:
    """LIPE's class-set regularization is on unless turned off, and never part of multiconcept."""
    assert _config(method="identity").uses_prior()
    assert _config(method="identity").hyperparameters()["prior_preservation"] is True
    assert not _config(method="identity", prior_preservation=False).uses_prior()
    assert _config(method="multiconcept").hyperparameters()["prior_preservation"] is False


@pytest.mark.parametrize("method", METHODS)
def test_quick_is_shorter_and_max_trains_longer_at_a_higher_rank(method: str) -> None:
    resolved = {name: resolve_training(method, name, base_resolution=64).values for name in PRESET_NAMES}
    assert resolved["quick"]["steps"] < resolved["standard"]["steps"] < resolved["max"]["steps"]
    assert resolved["max"]["rank"] > resolved["standard"]["rank"]
    for values in resolved.values():
        # Every preset's own values pass the bounds its overrides are held to.
        assert all(TRAINING_BOUNDS[key].check(value) is None for key, value in values.items()), values
        assert 0 < values["preview_every"] <= values["steps"]
        style = Path("unused") if method == "multiconcept" else None
        config = _config(**{"method": method, **values, "style_images": style})
        config.validate()


def test_resolution_follows_the_base_model_unless_overridden(tiny_sd: Path, tiny_sdxl: Path) -> None:
    assert native_resolution(tiny_sd) == 64
    assert native_resolution(tiny_sdxl) == 64
    assert resolve_training("identity", "quick", base_resolution=512).resolution == 512
    assert resolve_training("multiconcept", "max", base_resolution=1024).resolution == 1024
    override = resolve_training("identity", "standard", {"resolution": 768}, base_resolution=512)
    assert override.resolution == 768 and override.overridden == ("resolution",)
    with pytest.raises(PresetError, match="base model's size 4096 px"):
        resolve_training("identity", "standard", base_resolution=4096)
    with pytest.raises(ModelLoadError, match="not-a-model"):
        native_resolution(tiny_sd.parent / "not-a-model")


def test_overrides_apply_and_keep_the_phase_share() -> None:
    resolved = resolve_training(
        "multiconcept", "standard", {"steps": 900, "unet_lr": 2e-4, "seed": 7}, base_resolution=64
    )
    # 1200 of 2700 steps learn only the embeddings; an override of the total keeps that share.
    assert resolved.values["steps"] == 900 and resolved.values["phase1_steps"] == 400
    assert resolved.values["unet_lr"] == 2e-4 and resolved.values["seed"] == 7
    assert resolved.overridden == ("seed", "steps", "unet_lr")
    # JSON has one number type: 800.0 is the integer 800, and 7 a number like 7.0.
    whole = resolve_training("identity", "quick", {"steps": 800.0}, base_resolution=64)
    assert whole.values["steps"] == 800 and isinstance(whole.values["steps"], int)
    guidance = resolve_generation("quick", {"guidance": 7}, model_kind="sd15").values["guidance"]
    assert guidance == 7.0 and isinstance(guidance, float)


@pytest.mark.parametrize(
    ("method", "overrides", "key", "reason"),
    [
        ("identity", {"stepz": 10}, "stepz", "is not a setting that can be overridden (allowed: steps, "),
        ("identity", {"steps": 0}, "steps", "must be an integer from 1 to 20000, got 0"),
        ("identity", {"steps": "800"}, "steps", "must be an integer from 1 to 20000, got '800'"),
        ("identity", {"steps": True}, "steps", "got True"),
        ("identity", {"steps": 10.5}, "steps", "got 10.5"),
        ("identity", {"rank": 512}, "rank", "from 1 to 128"),
        ("identity", {"resolution": 100}, "resolution", "from 64 to 2048, a multiple of 8, got 100"),
        ("identity", {"unet_lr": 0.5}, "unet_lr", "a number from 1e-07 to 0.01, got 0.5"),
        ("identity", {"unet_lr": float("nan")}, "unet_lr", "got nan"),
        ("identity", {"text_lr": 1e-5}, "text_lr", "applies to the multiconcept method only"),
        ("multiconcept", {"prior_preservation": True}, "prior_preservation", "identity method only"),
        ("identity", {"prior_preservation": 1}, "prior_preservation", "must be true or false, got 1"),
        ("multiconcept", {"steps": 100, "phase1_steps": 101}, "phase1_steps", "must not exceed steps (100)"),
        ("identity", {"seed": -1}, "seed", "from 0 to 4294967295"),
        ("identity", {"steps": "x" * 10_000}, "steps", "got 'xxxxxxxxxx"),
    ],
)
def test_refused_overrides_name_the_key_and_what_it_accepts(
    method: str, overrides: dict[str, object], key: str, reason: str
) -> None:
    with pytest.raises(PresetError) as refused:
        resolve_training(method, "quick", overrides, base_resolution=64)
    assert key in refused.value.problems
    assert reason in refused.value.problems[key]
    assert str(refused.value).startswith(f"{key}: ")
    assert len(str(refused.value)) < 400  # a long value is cut, never echoed whole


def test_every_problem_is_reported_at_once_and_names_are_checked() -> None:
    with pytest.raises(PresetError) as refused:
        resolve_training("identity", "quick", {"steps": 0, "rank": 0, "colour": "red"}, base_resolution=64)
    assert set(refused.value.problems) == {"steps", "rank", "colour"}
    with pytest.raises(PresetError, match="preset: must be one of quick, standard, max, got 'fast'"):
        resolve_training("identity", "fast", base_resolution=64)
    with pytest.raises(PresetError, match="method: must be one of identity, multiconcept"):
        resolve_training("dreambooth", "quick", base_resolution=64)
    many = {f"key{index}": index for index in range(10_000)}
    with pytest.raises(PresetError, match=r"overrides: has 10000 settings; at most 14 can be overridden"):
        resolve_training("identity", "quick", many, base_resolution=64)
    with pytest.raises(PresetError, match="overrides: must be an object"):
        resolve_training("identity", "quick", ["steps", 10], base_resolution=64)  # type: ignore[arg-type]


def test_training_refuses_photos_prepared_at_another_resolution(
    tiny_sd: Path, prepared_source: PreparedDataset, tmp_path: Path
) -> None:
    resolved = resolve_training("identity", "quick", {"resolution": 128}, base_resolution=64)
    config = TrainConfig(
        base_model=str(tiny_sd), images=prepared_source.root, out=tmp_path, **resolved.config_kwargs()
    )
    with pytest.raises(TrainingError, match="prepared at 64 px and this run trains at 128 px"):
        Trainer(config)


def test_generation_presets() -> None:
    standard = resolve_generation("standard", model_kind="sd15").settings_kwargs()
    defaults = GenerationSettings()
    for name in ("steps", "guidance", "scheduler", "hires", "count", "seed", "width", "height"):
        assert standard[name] == getattr(defaults, name), name
    quick = resolve_generation("quick", {"count": 2, "seed": 5}, model_kind="sd15")
    assert quick.values["steps"] < standard["steps"] and quick.overridden == ("count", "seed")
    settings = GenerationSettings(prompt="a photo of {identity}", **quick.settings_kwargs())
    assert settings.count == 2 and settings.seed == 5
    # max adds SD 1.5's second pass; SDXL already generates at its native 1024 px.
    assert resolve_generation("max", model_kind="sd15").settings_kwargs()["hires"] is not None
    assert resolve_generation("max", model_kind="sdxl").settings_kwargs()["hires"] is None
    assert {field.name for field in fields(GenerationSettings)} >= set(standard)
    with pytest.raises(PresetError) as refused:
        resolve_generation("quick", {"count": 100, "scheduler": "fast", "width": 70}, model_kind="sd15")
    assert set(refused.value.problems) == {"count", "scheduler", "width"}
    assert "one of default, ddim" in refused.value.problems["scheduler"]


def test_train_cli_with_a_preset(
    tiny_sd: Path, prepared_source: PreparedDataset, tmp_path: Path, cli
) -> None:
    out = tmp_path / "out"
    done = cli(
        *identity_train_args(
            tiny_sd, prepared_source.root, out, "--preset", "quick", "--steps", "3", "--rank", "2"
        )
    )
    assert done.returncode == 0, done.stderr
    assert "preset quick (identity): steps 3, " in done.stderr and "(overridden: rank, steps)" in done.stderr
    hyperparameters = json.loads((out / "manifest.json").read_text())["hyperparameters"]
    quick = resolve_training("identity", "quick", base_resolution=64).values
    assert hyperparameters["steps"] == 3 and hyperparameters["rank"] == 2
    assert hyperparameters["preview_every"] == quick["preview_every"]
    assert hyperparameters["checkpoint_every"] == quick["checkpoint_every"]
    other = tmp_path / "other"
    refused = cli(
        *identity_train_args(tiny_sd, prepared_source.root, other, "--preset", "quick", "--text-lr", "1e-3")
    )
    assert refused.returncode == 2
    assert "error: text_lr: applies to the multiconcept method only" in refused.stderr
    assert not (tmp_path / "other").exists()
