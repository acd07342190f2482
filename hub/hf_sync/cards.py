"""Model cards for LoRA adapters: YAML front matter the Hub understands, plus Loom's lineage fields.

Follows spec ecosystem.md §4.2: ``library_name: peft``, ``base_model`` (the true base model) with
``base_model_relation: adapter``, tags including ``lora``, ``peft`` and ``base_model:adapter:<id>``.
Composed adapters add ``merged_from: [{id, revision, weight}]`` and ``merge: {method, params}`` and
embed the recipe as a mergekit-style YAML block in the body, as mergekit's own cards do.

Imports only PyYAML and ``hub.core.provenance`` (no torch, no huggingface_hub), so the API can
render cards for adapter pages cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from hub.core.errors import InvalidInputError
from hub.core.provenance import Provenance

REQUIRED_TAGS = ("lora", "peft")
_FENCE = "```"


def _clean(value: Any) -> Any:
    """Plain YAML-safe values: tuples to lists, mappings to dicts, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _lineage(merged_from: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, parent in enumerate(merged_from):
        if not parent.get("id"):
            raise InvalidInputError(f"merged_from[{i}].id is required, got {parent!r}")
        weight = parent.get("weight")
        if weight is not None and not isinstance(weight, int | float):
            raise InvalidInputError(f"merged_from[{i}].weight must be a number, got {weight!r}")
        out.append({"id": str(parent["id"]), "revision": parent.get("revision"), "weight": weight})
    return out


def mergekit_yaml(base_model: str, merged_from: Sequence[Mapping[str, Any]], merge: Mapping[str, Any]) -> str:
    """The recipe as a mergekit-style config (``models`` with per-model ``parameters``, ``merge_method``)."""
    models = []
    for p in _lineage(merged_from):
        entry: dict[str, Any] = {"model": p["id"]}
        if p["revision"]:
            entry["revision"] = p["revision"]
        if p["weight"] is not None:
            entry["parameters"] = {"weight": p["weight"]}
        models.append(entry)
    config: dict[str, Any] = {"merge_method": str(merge.get("method")), "base_model": base_model, "models": models}
    params = _clean(dict(merge.get("params") or {}))
    if params:
        config["parameters"] = params
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def render_model_card(
    *,
    base_model: str,
    name: str | None = None,
    description: str = "",
    license: str | None = None,  # noqa: A002 - the card field's name
    tags: Sequence[str] = (),
    datasets: Sequence[str] = (),
    language: Sequence[str] = (),
    pipeline_tag: str | None = "text-generation",
    merged_from: Sequence[Mapping[str, Any]] = (),
    merge: Mapping[str, Any] | None = None,
    source: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Render a README.md model card for a LoRA adapter.

    Args:
        base_model: the base model id the adapter applies to.
        name: the title (defaults to "LoRA adapter for <base_model>").
        description: markdown body text.
        license, tags, datasets, language, pipeline_tag: standard card fields.
        merged_from: for composed adapters, the parents as ``{id, revision, weight}``.
        merge: for composed adapters, ``{method, params}``; required with ``merged_from``.
        source: where the adapter came from (e.g. ``hf:org/repo@sha`` or a Loom id), recorded as ``loom_source``.
        extra: other front-matter fields, kept unless they clash with the fields above.

    Returns:
        The card text: ``---`` YAML front matter ``---`` then the markdown body.

    Raises:
        InvalidInputError: empty base model, lineage without ``merge.method``, malformed parents.
    """
    if not base_model or not isinstance(base_model, str):
        raise InvalidInputError(f"base_model is required, got {base_model!r}")
    if merged_from and not (merge and merge.get("method")):
        raise InvalidInputError("merge.method is required when merged_from is given")
    all_tags = list(dict.fromkeys([*REQUIRED_TAGS, *[str(t) for t in tags], f"base_model:adapter:{base_model}"]))
    meta: dict[str, Any] = {"library_name": "peft", "base_model": base_model, "base_model_relation": "adapter"}
    if pipeline_tag:
        meta["pipeline_tag"] = pipeline_tag
    if license:
        meta["license"] = license
    if language:
        meta["language"] = list(language)
    if datasets:
        meta["datasets"] = list(datasets)
    meta["tags"] = all_tags
    if merged_from:
        meta["merged_from"] = _lineage(merged_from)
        meta["merge"] = {"method": str(merge["method"]), "params": _clean(dict(merge.get("params") or {}))}  # type: ignore[index]
    if source:
        meta["loom_source"] = source
    for key, value in (extra or {}).items():
        meta.setdefault(str(key), _clean(value))
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    title = name or f"LoRA adapter for {base_model}"
    body = [f"# {title}", ""]
    if description.strip():
        body += [description.strip(), ""]
    body += ["This is a LoRA adapter for "
             f"[{base_model}](https://huggingface.co/{base_model}), loadable with PEFT:", "",
             f"{_FENCE}python", "from peft import PeftModel",
             "from transformers import AutoModelForCausalLM", "",
             f'base = AutoModelForCausalLM.from_pretrained("{base_model}")',
             'model = PeftModel.from_pretrained(base, "<this repo>")', _FENCE, ""]
    if merged_from:
        body += ["## Merge recipe", "",
                 f"Composed from {len(merged_from)} adapters with `{merge['method']}`:", "",  # type: ignore[index]
                 f"{_FENCE}yaml", mergekit_yaml(base_model, merged_from, merge or {}).rstrip(), _FENCE, ""]
    return f"---\n{front}---\n\n" + "\n".join(body)


def parse_model_card(text: str) -> tuple[dict[str, Any], str]:
    """Split a card into (front matter, body) with plain YAML; no front matter gives ``({}, text)``.

    Raises:
        InvalidInputError: the front matter is not valid YAML or not a mapping.
    """
    if not text.startswith("---"):
        return {}, text
    head, sep, body = text[3:].partition("\n---")
    if not sep:
        return {}, text
    try:
        meta = yaml.safe_load(head)
    except yaml.YAMLError as e:
        raise InvalidInputError(f"model card front matter is not valid YAML: {str(e).splitlines()[0]}") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise InvalidInputError(f"model card front matter must be a mapping, got {type(meta).__name__}")
    return meta, body.lstrip("\n")


def card_for_provenance(
    provenance: Provenance | None, *, base_model: str, **fields: Any
) -> str:
    """Render a card for a generated adapter, taking ``merged_from`` and ``merge`` from its provenance.

    ``merged_from`` ids are the parents' names (Loom ids or ``hf:`` sources), revisions their
    versions; ``merge.params`` is the frozen recipe plus method and library versions.
    """
    if provenance is None or not provenance.parents:
        return render_model_card(base_model=base_model, **fields)
    merged_from = [{"id": p.name, "revision": p.version, "weight": p.weight} for p in provenance.parents]
    merge = {"method": provenance.method, "params": provenance.recipe}
    extra = dict(fields.pop("extra", None) or {})
    extra.setdefault("loom_provenance", {"method_version": provenance.method_version,
                                         "library_version": provenance.library_version,
                                         "recipe_hash": provenance.recipe_hash()})
    return render_model_card(base_model=base_model, merged_from=merged_from, merge=merge, extra=extra, **fields)
