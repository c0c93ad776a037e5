"""Named presets (`quick`, `standard`, `max`) for training and generation, and validated overrides.

A preset is a documented set of values (docs/personalization.md, "Presets" gives the reason for
each); a caller may override a whitelisted few, each checked for type and range, and anything
else is refused with the key and what it accepts. The same function serves the CLI
(`train --preset quick`) and the Django jobs, so a value the API accepts is one the core accepts.

Plain Python, no torch: the web process validates a job request without loading the core.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

PresetName = Literal["quick", "standard", "max"]
PRESET_NAMES: tuple[PresetName, ...] = ("quick", "standard", "max")
METHODS = ("identity", "multiconcept")
ModelKind = Literal["sd15", "sdxl"]

# The sampling schedulers generation can switch to ("default" keeps the model's own).
SCHEDULERS = ("default", "ddim", "pndm", "euler", "euler-a", "dpm++2m", "dpm++2m-karras", "unipc", "lms")

MIN_RESOLUTION, MAX_RESOLUTION = 64, 2048
MAX_STEPS = 20_000
MAX_SEED = 2**32 - 1


class PresetError(ValueError):
    """A preset or override that is refused; `problems` maps each offending key to its reason."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {reason}" for key, reason in problems.items()))


@dataclass(frozen=True)
class Bound:
    """One overridable key: its type, inclusive range, and the methods it applies to."""

    kind: type
    low: float | None = None
    high: float | None = None
    multiple_of: int | None = None
    methods: tuple[str, ...] = METHODS
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind is bool:
            return "true or false"
        noun = "an integer" if self.kind is int else "a number"
        text = f"{noun} from {_number(self.low)} to {_number(self.high)}"
        return text + (f", a multiple of {self.multiple_of}" if self.multiple_of else "")

    def check(self, value: Any) -> str | None:
        """The reason `value` is refused, or None."""
        if self.choices:
            return None if value in self.choices else f"must be {self.describe()}, got {_shown(value)}"
        if self.kind is bool:
            return None if isinstance(value, bool) else f"must be true or false, got {_shown(value)}"
        # JSON has one number type: an integral float (800.0) is an integer, a bool never is a number.
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if self.kind is int and numeric and float(value).is_integer():
            value = int(value)
        elif self.kind is int or not numeric:
            return f"must be {self.describe()}, got {_shown(value)}"
        assert self.low is not None and self.high is not None
        if not self.low <= value <= self.high or (self.multiple_of and value % self.multiple_of):
            return f"must be {self.describe()}, got {_shown(value)}"
        return None


def _shown(value: Any) -> str:
    """The refused value as a person can recognise it, cut short: requests may carry anything."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _validate(
    overrides: Mapping[str, Any] | None, bounds: Mapping[str, Bound], method: str | None
) -> dict[str, Any]:
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise PresetError({"overrides": f"must be an object of settings, got {type(overrides).__name__}"})
    if len(overrides) > len(bounds):  # each key at most once: more can only be unknown ones
        raise PresetError(
            {"overrides": f"has {len(overrides)} settings; at most {len(bounds)} can be overridden"}
        )
    problems: dict[str, str] = {}
    accepted: dict[str, Any] = {}
    allowed = ", ".join(name for name, spec in bounds.items() if method is None or method in spec.methods)
    for key, value in overrides.items():
        bound = bounds.get(key) if isinstance(key, str) else None
        if bound is None:
            problems[str(key)[:64]] = f"is not a setting that can be overridden (allowed: {allowed})"
        elif method is not None and method not in bound.methods:
            problems[key] = f"applies to the {' and '.join(bound.methods)} method only"
        elif (reason := bound.check(value)) is not None:
            problems[key] = reason
        else:
            accepted[key] = bound.kind(value) if bound.kind in (int, float) else value
    if problems:
        raise PresetError(problems)
    return accepted


# ---- training ------------------------------------------------------------------------------------

TRAINING_BOUNDS: dict[str, Bound] = {
    "steps": Bound(int, 1, MAX_STEPS),
    "phase1_steps": Bound(int, 0, MAX_STEPS, methods=("multiconcept",)),
    "rank": Bound(int, 1, 128),
    "batch_size": Bound(int, 1, 16),
    "unet_lr": Bound(float, 1e-7, 1e-2),
    "text_lr": Bound(float, 1e-7, 1e-2, methods=("multiconcept",)),
    "embedding_lr": Bound(float, 1e-7, 1e-2, methods=("multiconcept",)),
    "resolution": Bound(int, MIN_RESOLUTION, MAX_RESOLUTION, multiple_of=8),
    "seed": Bound(int, 0, MAX_SEED),
    "prior_preservation": Bound(bool, methods=("identity",)),
    "num_class_images": Bound(int, 1, 1000, methods=("identity",)),
    "checkpoint_every": Bound(int, 0, MAX_STEPS),
    "preview_every": Bound(int, 0, MAX_STEPS),
    "preview_steps": Bound(int, 1, 150),
}

# Values shared by every preset of a method: the method's defaults (TrainConfig's).
_COMMON: dict[str, dict[str, Any]] = {
    "identity": {"unet_lr": 1e-4, "seed": 0, "prior_preservation": True, "num_class_images": 100},
    "multiconcept": {"unet_lr": 4e-4, "text_lr": 4e-5, "embedding_lr": 2e-3, "seed": 0},
}

# Reasons for every value: docs/personalization.md, "Presets".
TRAINING_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "identity": {
        "quick": {
            "steps": 250,
            "rank": 4,
            "batch_size": 1,
            # Trying the loop: no class set to generate first (100 sampling runs per base model).
            "prior_preservation": False,
            "checkpoint_every": 100,
            "preview_every": 50,
            "preview_steps": 10,
        },
        "standard": {
            "steps": 800,
            "rank": 4,
            "batch_size": 1,
            "checkpoint_every": 250,
            "preview_every": 100,
            "preview_steps": 20,
        },
        "max": {
            "steps": 1600,
            "rank": 8,
            "batch_size": 1,
            "checkpoint_every": 250,
            "preview_every": 200,
            "preview_steps": 20,
        },
    },
    "multiconcept": {
        "quick": {
            "steps": 450,
            "phase1_steps": 200,
            "rank": 4,
            "batch_size": 1,
            "checkpoint_every": 150,
            "preview_every": 75,
            "preview_steps": 10,
        },
        "standard": {
            "steps": 2700,
            "phase1_steps": 1200,
            "rank": 4,
            "batch_size": 1,
            "checkpoint_every": 250,
            "preview_every": 150,
            "preview_steps": 20,
        },
        "max": {
            "steps": 4200,
            "phase1_steps": 1200,
            "rank": 8,
            "batch_size": 1,
            "checkpoint_every": 250,
            "preview_every": 300,
            "preview_steps": 20,
        },
    },
}


@dataclass(frozen=True)
class ResolvedTraining:
    """A preset with its overrides applied: every chosen value, and what came from an override."""

    method: str
    preset: PresetName
    values: dict[str, Any]
    overridden: tuple[str, ...] = field(default=())

    @property
    def resolution(self) -> int:
        """The size the photos are prepared at (`prepare --resolution`) and training checks."""
        return int(self.values["resolution"])

    def config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for TrainConfig (besides method, base model, folders and device)."""
        return {"method": self.method, **self.values}


def resolve_training(
    method: str,
    preset: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    base_resolution: int,
) -> ResolvedTraining:
    """The values of `preset` for `method` with validated `overrides` applied.

    `base_resolution` is the base model's native size (`models.native_resolution`: tiny 64,
    SD 1.5 512, SDXL 1024); training runs at it unless `resolution` is overridden. When
    `steps` is overridden and `phase1_steps` is not, the preset's share of embedding steps is
    kept. Raises PresetError naming every refused key and what it accepts.
    """
    if method not in METHODS:
        raise PresetError({"method": f"must be one of {', '.join(METHODS)}, got {method!r}"})
    if preset not in PRESET_NAMES:
        raise PresetError({"preset": f"must be one of {', '.join(PRESET_NAMES)}, got {preset!r}"})
    accepted = _validate(overrides, TRAINING_BOUNDS, method)
    chosen = TRAINING_PRESETS[method][preset]
    common = {key: value for key, value in _COMMON[method].items() if key not in chosen}
    values: dict[str, Any] = {**chosen, **common, "resolution": base_resolution}
    values.update(accepted)
    if method == "multiconcept" and "steps" in accepted and "phase1_steps" not in accepted:
        values["phase1_steps"] = round(accepted["steps"] * chosen["phase1_steps"] / chosen["steps"])
    if method == "multiconcept" and values["phase1_steps"] > values["steps"]:
        raise PresetError(
            {"phase1_steps": f"must not exceed steps ({values['steps']}), got {values['phase1_steps']}"}
        )
    size = TRAINING_BOUNDS["resolution"]
    if "resolution" not in accepted and size.check(base_resolution) is not None:
        raise PresetError(
            {
                "resolution": f"the base model's size {base_resolution} px cannot be trained at: "
                f"override it with {size.describe()}"
            }
        )
    return ResolvedTraining(method, preset, values, tuple(sorted(accepted)))


# ---- generation ----------------------------------------------------------------------------------

GENERATION_BOUNDS: dict[str, Bound] = {
    "count": Bound(int, 1, 16),
    "seed": Bound(int, 0, MAX_SEED),
    "steps": Bound(int, 1, 150),
    "guidance": Bound(float, 0.0, 30.0),
    "width": Bound(int, MIN_RESOLUTION, MAX_RESOLUTION, multiple_of=8),
    "height": Bound(int, MIN_RESOLUTION, MAX_RESOLUTION, multiple_of=8),
    "scheduler": Bound(str, choices=SCHEDULERS),
}

GENERATION_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"steps": 20, "guidance": 7.5, "scheduler": "dpm++2m", "hires": None},
    "standard": {"steps": 50, "guidance": 7.5, "scheduler": "default", "hires": None},
    # SD 1.5's second pass (generate.HiresSettings' defaults); SDXL is already native at 1024 px.
    "max": {"steps": 50, "guidance": 7.5, "scheduler": "default", "hires": "sd15"},
}
_HIRES = {"scale": 2.0, "strength": 0.4, "mode": "latent"}


@dataclass(frozen=True)
class ResolvedGeneration:
    preset: PresetName
    values: dict[str, Any]
    overridden: tuple[str, ...] = field(default=())

    def settings_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for generate.GenerationSettings (the prompt and style come from the request)."""
        from personalization.generate import HiresSettings

        values = dict(self.values)
        hires = values.pop("hires")
        return {**values, "hires": None if hires is None else HiresSettings(**hires)}


def resolve_generation(
    preset: str, overrides: Mapping[str, Any] | None = None, *, model_kind: ModelKind
) -> ResolvedGeneration:
    """The values of a generation preset with validated overrides (count, seed, steps, size, ...)."""
    if preset not in PRESET_NAMES:
        raise PresetError({"preset": f"must be one of {', '.join(PRESET_NAMES)}, got {preset!r}"})
    accepted = _validate(overrides, GENERATION_BOUNDS, None)
    chosen = dict(GENERATION_PRESETS[preset])
    chosen["hires"] = dict(_HIRES) if chosen["hires"] == model_kind else None
    values = {"count": 1, "seed": 0, "width": None, "height": None, **chosen, **accepted}
    return ResolvedGeneration(preset, values, tuple(sorted(accepted)))
