"""The only reader and writer of PEFT LoRA folders in Loom.

A PEFT folder holds ``adapter_config.json`` and ``adapter_model.safetensors`` whose keys are
``base_model.model.<module>.lora_A.weight`` / ``lora_B.weight``. Loading validates everything a
hub must not trust: the safetensors header before any tensor is read, the config, key names
against ``target_modules``, ranks against ``r``/``rank_pattern``, finite values. Features Loom does
not implement are refused by name rather than mishandled. Pickle files are never loaded.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hub.core.adapter import LoraAdapter, LoraLayer, LoraSpec
from hub.core.errors import InvalidAdapterError, UnsupportedFeatureError
from hub.core.files import CONFIG_NAME, WEIGHTS_NAME
from hub.core.safetensors_check import check_safetensors_header

PICKLE_NAMES = ("adapter_model.bin", "adapter_model.pt", "pytorch_model.bin")
PREFIX = "base_model.model."
_KEY_RE = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.weight$")

#: init_lora_weights values whose saved weights are valid on the unmodified base model.
_PLAIN_INITS = (True, False, "gaussian", "eva")
#: config fields that carry Loom's own meaning; everything else is kept verbatim.
_OWN_FIELDS = {
    "peft_type", "task_type", "base_model_name_or_path", "revision", "r", "lora_alpha",
    "rank_pattern", "alpha_pattern", "use_rslora",
}


def _feature_checks(cfg: Mapping[str, Any]) -> None:
    """Refuse configurations Loom cannot apply faithfully, naming the feature."""
    peft_type = cfg.get("peft_type", "LORA")
    if str(peft_type).upper() != "LORA":
        raise UnsupportedFeatureError(f"peft_type {peft_type!r} is not supported; Loom stores LORA adapters only")
    refusals = [
        (cfg.get("use_dora"), "DoRA (use_dora=true)"),
        (cfg.get("modules_to_save"), f"modules_to_save={cfg.get('modules_to_save')!r} (full copies of base modules)"),
        (cfg.get("bias", "none") not in (None, "none"), f"LoRA bias (bias={cfg.get('bias')!r})"),
        (cfg.get("lora_bias"), "lora_bias=true"),
        (cfg.get("fan_in_fan_out"), "fan_in_fan_out=true (Conv1D layers)"),
        (cfg.get("layer_replication"), "layer_replication"),
        (cfg.get("trainable_token_indices"), "trainable_token_indices"),
        (cfg.get("target_parameters"), "target_parameters (LoRA on raw parameters)"),
        (cfg.get("alora_invocation_tokens"), "aLoRA (alora_invocation_tokens)"),
        (cfg.get("use_qalora"), "QALoRA (use_qalora=true)"),
        (cfg.get("use_bdlora"), "use_bdlora=true"),
        (cfg.get("arrow_config"), "Arrow routing (arrow_config)"),
        (cfg.get("megatron_config"), "Megatron parallel LoRA (megatron_config)"),
    ]
    for bad, what in refusals:
        if bad:
            raise UnsupportedFeatureError(f"unsupported PEFT feature: {what}")
    init = cfg.get("init_lora_weights", True)
    if init not in _PLAIN_INITS:
        raise UnsupportedFeatureError(
            f"unsupported PEFT feature: init_lora_weights={init!r} changes the base weights, "
            "so the adapter is not valid on the unmodified base model"
        )


def _finite(t: torch.Tensor) -> bool:
    """No NaN/Inf. numpy for float32/64: torch's threaded kernel is 40x slower on a loaded 2-core host."""
    import numpy as np

    if t.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(t.detach().cpu().numpy()).all())
    return bool(torch.isfinite(t).all())


def _pattern_value(patterns: Mapping[str, Any], module: str, default: Any) -> Any:
    """PEFT's pattern lookup: the first key matching ``(.*\\.)?key$`` against the module path."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _targeted(target_modules: Any, module: str) -> bool:
    if target_modules is None:
        return False
    if isinstance(target_modules, str):
        if target_modules == "all-linear":
            return True
        try:
            return re.fullmatch(target_modules, module) is not None
        except re.error as e:
            raise InvalidAdapterError(f"target_modules {target_modules!r} is not a valid regex: {e}") from None
    return any(module == t or module.endswith("." + t) for t in target_modules)


def parse_config(raw: bytes | str) -> dict[str, Any]:
    """Parse ``adapter_config.json`` text into a dict, with a clear error if it is not JSON."""
    try:
        cfg = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidAdapterError(f"{CONFIG_NAME} is not valid JSON: {e}") from None
    except RecursionError:
        raise InvalidAdapterError(f"{CONFIG_NAME} nests too deep", field=CONFIG_NAME) from None
    if not isinstance(cfg, dict):
        raise InvalidAdapterError(f"{CONFIG_NAME} must be a JSON object")
    return cfg


def _check_base_id(base: str) -> None:
    """A base model named as a hub id (``org/name``), not as a path of the uploader's or the server's disk."""
    parts = base.replace("\\", "/").split("/")
    if (base.startswith(("/", "~", "\\")) or ".." in parts or "." in parts or re.match(r"^[A-Za-z]:", base)
            or any(c.isspace() or ord(c) < 32 for c in base) or len(base) > 256):
        raise InvalidAdapterError(
            f"{CONFIG_NAME}: base_model_name_or_path {base[:100]!r} must be a model id like 'org/name', not a path",
            field="base_model_name_or_path")


def adapter_from_state(
    config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], *, require_base_model: bool = False
) -> LoraAdapter:
    """Build a :class:`LoraAdapter` from a PEFT config dict and its state dict, validating both.

    Raises:
        UnsupportedFeatureError: a PEFT feature Loom does not support.
        InvalidAdapterError: missing fields, unexpected keys, unpaired A/B, rank disagreeing with
            the config, modules outside ``target_modules``, NaN or Inf values.
    """
    _feature_checks(config)
    for fld in ("r", "lora_alpha"):
        v = config.get(fld)
        if v is not None and (not isinstance(v, int | float) or isinstance(v, bool) or v <= 0):
            raise InvalidAdapterError(f"{CONFIG_NAME}: {fld} must be a positive number, got {v!r}")
    if "target_modules" not in config:
        raise InvalidAdapterError(f"{CONFIG_NAME}: target_modules is required")
    base = config.get("base_model_name_or_path")
    if require_base_model:  # an upload: what PEFT needs to load the folder, and a base named as an id
        if "peft_type" not in config:
            raise InvalidAdapterError(f"{CONFIG_NAME}: peft_type is required (\"LORA\"); PEFT cannot load a "
                                      "folder without it", field="peft_type")
        if not base:
            raise InvalidAdapterError(f"{CONFIG_NAME}: base_model_name_or_path is required",
                                      field="base_model_name_or_path")
        _check_base_id(str(base))
    r_default = config.get("r", 8)
    alpha_default = config.get("lora_alpha", 8)
    rank_pattern = config.get("rank_pattern") or {}
    alpha_pattern = config.get("alpha_pattern") or {}
    use_rslora = bool(config.get("use_rslora", False))

    for key in tensors:  # name features first, whatever order the keys come in
        if "lora_embedding_" in key:
            raise UnsupportedFeatureError(f"unsupported PEFT feature: embedding LoRA (tensor {key!r})")
        if "lora_magnitude_vector" in key:
            raise UnsupportedFeatureError(f"unsupported PEFT feature: DoRA (tensor {key!r})")
        if "lora_" not in key and key.endswith(".weight"):
            raise UnsupportedFeatureError(
                f"unsupported PEFT feature: full base weights saved with the adapter (tensor {key!r}; "
                "e.g. save_embedding_layers or modules_to_save)"
            )
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        m = _KEY_RE.match(key)
        if not m:
            raise InvalidAdapterError(
                f"unexpected tensor {key!r}: expected base_model.model.<module>.lora_A.weight or .lora_B.weight"
            )
        pairs.setdefault(m["module"], {})[m["ab"]] = t
    if not pairs:
        raise InvalidAdapterError(f"{WEIGHTS_NAME} holds no LoRA tensors")

    layers: dict[str, LoraLayer] = {}
    for module, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            missing = "lora_B" if "A" in ab else "lora_A"
            raise InvalidAdapterError(f"module {module!r} has no {missing}.weight")
        if not _targeted(config["target_modules"], module):
            raise InvalidAdapterError(
                f"module {module!r} has LoRA tensors but is not in target_modules {config['target_modules']!r}"
            )
        a, b = ab["A"], ab["B"]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise InvalidAdapterError(
                f"module {module!r}: lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)} do not form "
                "(r, in) and (out, r)"
            )
        want_r = _pattern_value(rank_pattern, module, r_default)
        if a.shape[0] != want_r:
            raise InvalidAdapterError(
                f"module {module!r}: rank is {a.shape[0]} by its tensors but {want_r} by {CONFIG_NAME}"
            )
        if not (_finite(a) and _finite(b)):
            raise InvalidAdapterError(f"module {module!r}: LoRA weights contain NaN or Inf")
        alpha = float(_pattern_value(alpha_pattern, module, alpha_default))
        layers[module] = LoraLayer(a=a, b=b, alpha=alpha, use_rslora=use_rslora)

    extra = tuple(sorted((k, v) for k, v in config.items() if k not in _OWN_FIELDS))
    spec = LoraSpec(
        base_model=base or None,
        base_revision=config.get("revision"),
        use_rslora=use_rslora,
        task_type=config.get("task_type"),
        extra_config=tuple((k, _freeze(v)) for k, v in extra),
    )
    return LoraAdapter(layers=layers, spec=spec)


def _freeze(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v


def _thaw(v: Any) -> Any:
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


def find_weights(folder: str | os.PathLike[str]) -> Path:
    """The safetensors file of a PEFT folder; pickles are refused by name, never opened."""
    d = Path(folder)
    st = d / WEIGHTS_NAME
    if st.is_file():
        return st
    for name in PICKLE_NAMES:
        if (d / name).exists():
            raise InvalidAdapterError(
                f"{name} is a pickle file and is never loaded; save the adapter with safetensors "
                f"(peft: save_pretrained(..., safe_serialization=True)) to get {WEIGHTS_NAME}"
            )
    raise InvalidAdapterError(f"{d} has no {WEIGHTS_NAME}")


def load_peft(
    folder: str | os.PathLike[str], *, max_bytes: int | None = None, require_base_model: bool = False
) -> LoraAdapter:
    """Load and validate a PEFT LoRA folder (see :func:`load_peft_files`)."""
    d = Path(folder)
    if not (d / CONFIG_NAME).is_file():
        raise InvalidAdapterError(f"{d} has no {CONFIG_NAME}")
    return load_peft_files(d / CONFIG_NAME, find_weights(d), max_bytes=max_bytes,
                           require_base_model=require_base_model)


def load_peft_files(
    config_path: str | os.PathLike[str],
    weights_path: str | os.PathLike[str],
    *,
    max_bytes: int | None = None,
    require_base_model: bool = False,
) -> LoraAdapter:
    """Load a config file and a safetensors file; the header is checked before tensors are read."""
    config = parse_config(Path(config_path).read_bytes())
    check_safetensors_header(weights_path, max_bytes=max_bytes)
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise InvalidAdapterError(f"{WEIGHTS_NAME} could not be read: {e}") from None
    return adapter_from_state(config, tensors, require_base_model=require_base_model)


def adapter_config(adapter: LoraAdapter) -> dict[str, Any]:
    """The ``adapter_config.json`` dict PEFT needs to load ``adapter`` exactly."""
    cfg: dict[str, Any] = {k: _thaw(v) for k, v in adapter.spec.extra_config}
    r, alpha = adapter.r, adapter.alpha
    rank_pattern = {m: la.rank for m, la in adapter.layers.items() if la.rank != r}
    alpha_pattern = {m: la.alpha for m, la in adapter.layers.items() if la.alpha != alpha}
    targets = cfg.get("target_modules")  # kept from the loaded config when it still fits
    if targets is None or not all(_targeted(targets, m) for m in adapter.layers):
        targets = adapter.target_modules
    cfg.update(
        {
            "peft_type": "LORA",
            "task_type": adapter.spec.task_type,
            "base_model_name_or_path": adapter.spec.base_model,
            "revision": adapter.spec.base_revision,
            "r": r,
            "lora_alpha": int(alpha) if float(alpha).is_integer() else alpha,
            "target_modules": targets,
            "rank_pattern": rank_pattern,
            "alpha_pattern": alpha_pattern,
            "use_rslora": bool(adapter.spec.use_rslora),
        }
    )
    cfg.setdefault("bias", "none")
    cfg.setdefault("lora_dropout", 0.0)
    cfg.setdefault("fan_in_fan_out", False)
    cfg.setdefault("inference_mode", True)
    cfg.setdefault("init_lora_weights", True)
    cfg.setdefault("use_dora", False)
    cfg.setdefault("modules_to_save", None)
    return cfg


def adapter_state_dict(adapter: LoraAdapter) -> dict[str, torch.Tensor]:
    """PEFT state-dict keys -> contiguous CPU tensors."""
    out: dict[str, torch.Tensor] = {}
    for m, la in adapter.layers.items():
        out[f"{PREFIX}{m}.lora_A.weight"] = la.a.detach().contiguous().cpu()
        out[f"{PREFIX}{m}.lora_B.weight"] = la.b.detach().contiguous().cpu()
    return out


def save_peft(adapter: LoraAdapter, folder: str | os.PathLike[str]) -> Path:
    """Write ``adapter`` as a PEFT folder that ``PeftModel.from_pretrained`` loads. Returns the folder."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    (d / CONFIG_NAME).write_text(json.dumps(adapter_config(adapter), indent=2, sort_keys=True) + "\n")
    save_file(adapter_state_dict(adapter), str(d / WEIGHTS_NAME), metadata={"format": "pt"})
    return d
