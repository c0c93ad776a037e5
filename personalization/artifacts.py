"""The trained-model folder: what training writes and what generation/editing load.

Layout (see docs/personalization.md):

    manifest.json                       what was trained, on what, how, with which result
    pytorch_lora_weights.safetensors    diffusers LoRA: pipe.load_lora_weights(folder)
    embeddings/<role>.safetensors       the new tokens: pipe.load_textual_inversion(file)
                                        (SD 1.5: {token: vector}; SDXL: {"clip_l", "clip_g"})
    kohya/lora.safetensors              kohya/A1111 key format (ComfyUI, the web UIs)
    kohya/embeddings/<name>.safetensors A1111 embedding format ({"emb_params"} or clip_l/clip_g)

`load_trained` applies all of it to a loaded pipeline so generation and editing share one path.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya
from safetensors.torch import load_file, save_file

from personalization.models import ModelKind, SDPipeline, pipeline_kind

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
EMBEDDINGS_DIR = "embeddings"
KOHYA_DIR = "kohya"
KOHYA_LORA_NAME = "lora.safetensors"
ADAPTER_NAME = "likeness"
# SDXL embedding files keep one vector per text encoder under these names (the A1111/ComfyUI convention).
SDXL_ENCODER_KEYS = ("clip_l", "clip_g")


class ArtifactError(ValueError):
    """A trained-model folder that is missing, incomplete or made for another base architecture."""


@dataclass(frozen=True)
class TrainedManifest:
    base_model: str
    base_model_revision: str | None
    model_kind: ModelKind
    method: str
    tokens: dict[str, str]
    class_word: str
    resolution: int
    hyperparameters: dict[str, Any]
    dataset_hash: str
    final_losses: dict[str, float]
    wall_time_s: float
    device: str
    # Recommended LoRA scales at inference (MagiCapture: 0.6 UNet / 0.9 text).
    default_scales: dict[str, float]
    files: dict[str, Any]
    style_dataset_hash: str | None = None
    # Reconstruction losses on fixed draws over the training photos, before and after training.
    validation_losses: dict[str, dict[str, float]] = field(default_factory=dict)
    steps: int = 0
    notices: list[str] = field(default_factory=list)
    created_at: str = ""
    library_versions: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainedManifest:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactError(
                f"manifest format_version {version!r} is not supported (expected {FORMAT_VERSION})"
            )
        known = set(cls.__dataclass_fields__)
        missing = [
            name for name, spec in cls.__dataclass_fields__.items() if name not in data and _required(spec)
        ]
        if missing:
            raise ArtifactError(f"manifest lacks {', '.join(sorted(missing))}")
        return cls(**{key: value for key, value in data.items() if key in known})


def _required(spec: Any) -> bool:
    from dataclasses import MISSING

    return bool(spec.default is MISSING and spec.default_factory is MISSING)


def read_manifest(model_dir: str | Path) -> TrainedManifest:
    path = Path(model_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{model_dir} is not a trained model folder: {MANIFEST_NAME} is missing")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{path} is not valid JSON: {error}") from error
    return TrainedManifest.from_dict(data)


def _token_file_stem(token: str) -> str:
    """A1111 and ComfyUI name an embedding after its file: '<sks>' becomes 'sks'."""
    stem = "".join(char for char in token if char.isalnum() or char in "-_")
    return stem or "token"


def write_artifacts(
    out_dir: str | Path,
    *,
    kind: ModelKind,
    unet_lora: dict[str, torch.Tensor],
    text_lora: dict[str, dict[str, torch.Tensor]],
    lora_alpha: float,
    embeddings: dict[str, tuple[str, list[torch.Tensor]]],
    lora_metadata: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Writes LoRA weights and token embeddings in diffusers and kohya/A1111 formats.

    unet_lora / text_lora: peft state dicts (get_peft_model_state_dict) of the UNet and of each
    text encoder by pipeline component name ("text_encoder", "text_encoder_2").
    embeddings: role -> (token, one vector per text encoder in pipeline order).
    Returns the `files` entry of the manifest (paths relative to out_dir).
    """
    for component, state in [("unet", unet_lora), *text_lora.items()]:
        stray = sorted(key for key in state if "lora_" not in key)
        if stray:
            # e.g. a resized embedding matrix: new rows travel as embeddings, never inside the LoRA file.
            raise ArtifactError(f"{component} LoRA state has non-LoRA entries: {', '.join(stray[:3])}")
    root = Path(out_dir)
    (root / EMBEDDINGS_DIR).mkdir(parents=True, exist_ok=True)
    (root / KOHYA_DIR / EMBEDDINGS_DIR).mkdir(parents=True, exist_ok=True)
    metadata = lora_metadata or {}
    saver = StableDiffusionXLPipeline if kind == "sdxl" else StableDiffusionPipeline
    save_kwargs: dict[str, Any] = {
        "unet_lora_layers": convert_state_dict_to_diffusers(unet_lora),
        "unet_lora_adapter_metadata": metadata.get("unet"),
    }
    for component, state in text_lora.items():
        if state:
            save_kwargs[f"{component}_lora_layers"] = convert_state_dict_to_diffusers(state)
            save_kwargs[f"{component}_lora_adapter_metadata"] = metadata.get(component)
    saver.save_lora_weights(root, weight_name=LORA_WEIGHT_NAME, safe_serialization=True, **save_kwargs)

    files: dict[str, Any] = {
        "lora": LORA_WEIGHT_NAME,
        "embeddings": {},
        "kohya_lora": f"{KOHYA_DIR}/{KOHYA_LORA_NAME}",
        "kohya_embeddings": {},
    }
    for role, (token, vectors) in embeddings.items():
        vectors = [vector.detach().to("cpu", torch.float32).reshape(-1).contiguous() for vector in vectors]
        if kind == "sdxl":
            diffusers_state = {key: vec[None] for key, vec in zip(SDXL_ENCODER_KEYS, vectors, strict=True)}
            a1111_state = dict(diffusers_state)
        else:
            (vector,) = vectors
            diffusers_state = {token: vector}
            a1111_state = {"emb_params": vector[None]}
        relative = f"{EMBEDDINGS_DIR}/{role}.safetensors"
        save_file(diffusers_state, str(root / relative), metadata={"token": token})
        kohya_relative = f"{KOHYA_DIR}/{EMBEDDINGS_DIR}/{_token_file_stem(token)}.safetensors"
        save_file(a1111_state, str(root / kohya_relative), metadata={"token": token})
        files["embeddings"][role] = relative
        files["kohya_embeddings"][role] = kohya_relative

    peft_state = {f"unet.{key}": value for key, value in unet_lora.items()}
    for component, state in text_lora.items():
        peft_state.update({f"{component}.{key}": value for key, value in state.items()})
    converted = convert_state_dict_to_kohya(peft_state)
    kohya_state = {_kohya_text_key(key): value for key, value in converted.items()}
    for key in list(kohya_state):
        if key.endswith(".alpha"):
            kohya_state[key] = torch.tensor(float(lora_alpha))
    if kind == "sd15":
        # A1111 names the single SD 1.x text encoder lora_te_, not lora_te1_.
        kohya_state = {key.replace("lora_te1_", "lora_te_", 1): value for key, value in kohya_state.items()}
    kohya_state = {key: value.detach().to("cpu").contiguous() for key, value in kohya_state.items()}
    save_file(
        kohya_state, str(root / KOHYA_DIR / KOHYA_LORA_NAME), metadata={"ss_network_alpha": str(lora_alpha)}
    )
    return files


def _kohya_text_key(key: str) -> str:
    """transformers 5 dropped CLIP's `text_model.` level; kohya and A1111 keys keep it."""
    for prefix in ("lora_te1_", "lora_te2_"):
        if key.startswith(prefix) and not key.startswith(prefix + "text_model_"):
            return prefix + "text_model_" + key[len(prefix) :]
    return key


def write_manifest(out_dir: str | Path, manifest: TrainedManifest) -> Path:
    path = Path(out_dir) / MANIFEST_NAME
    path.write_text(manifest.to_json() + "\n")
    return path


def load_token_embeddings(pipe: SDPipeline, file: str | Path, token: str) -> None:
    """Adds `token` and its vector(s) to the pipeline's tokenizer(s) and text encoder(s).

    Accepts our files and A1111's: diffusers' own load_textual_inversion does the work.
    """
    state = load_file(str(file))
    if pipeline_kind(pipe) == "sdxl":
        assert isinstance(pipe, StableDiffusionXLPipeline)
        if set(state) != set(SDXL_ENCODER_KEYS):
            raise ArtifactError(f"{file} is not an SDXL embedding (expected keys {SDXL_ENCODER_KEYS})")
        pipe.load_textual_inversion(
            state["clip_l"], token=token, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer
        )
        pipe.load_textual_inversion(
            state["clip_g"], token=token, text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2
        )
    else:
        pipe.load_textual_inversion(str(file), token=token)


def load_trained(
    pipe: SDPipeline,
    model_dir: str | Path,
    *,
    unet_scale: float | None = None,
    text_scale: float | None = None,
    adapter_name: str = ADAPTER_NAME,
) -> TrainedManifest:
    """Applies a trained folder (tokens, then LoRA) to a loaded base pipeline, in place.

    Scales default to the manifest's recommended ones. Returns the manifest so callers know
    the tokens to put in prompts.
    """
    root = Path(model_dir)
    manifest = read_manifest(root)
    kind = pipeline_kind(pipe)
    if kind != manifest.model_kind:
        raise ArtifactError(f"{root} was trained on a {manifest.model_kind} model, the pipeline is {kind}")
    for role, token in manifest.tokens.items():
        load_token_embeddings(pipe, root / manifest.files["embeddings"][role], token)
    pipe.load_lora_weights(str(root), weight_name=manifest.files["lora"], adapter_name=adapter_name)
    set_trained_scales(
        pipe,
        adapter_name,
        unet_scale=manifest.default_scales.get("unet", 1.0) if unet_scale is None else unet_scale,
        text_scale=manifest.default_scales.get("text", 1.0) if text_scale is None else text_scale,
    )
    return manifest


def set_trained_scales(pipe: SDPipeline, adapter_name: str, *, unet_scale: float, text_scale: float) -> None:
    """Sets the LoRA strength separately for the UNet and the text encoder(s) that carry the adapter."""
    present = pipe.get_list_adapters()
    weights: dict[str, float] = {}
    for component, adapters in present.items():
        if adapter_name in adapters:
            weights[component] = unet_scale if component == "unet" else text_scale
    pipe.set_adapters(adapter_name, adapter_weights=weights)
