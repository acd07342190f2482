"""The objective of ``lorahub`` compositions: a registered base model's few-shot loss on the sources' samples.

LoraHub searches one weight per source by scoring candidate merges on a few ``{"input", "output"}``
examples with the base model (:func:`merging.objectives.lm_loss_objective`). A composition job builds
that objective here:

- the base model is loaded from its registered local weights folder (the folder the inference
  service serves), with its tokenizer;
- the examples are the sources' ``samples.jsonl`` rows, the same number from each source (at most
  :data:`MAX_EXAMPLES` in all), so no source dominates the loss;
- each prompt is encoded the way the hub serves and trains prompts on that base
  (:func:`hub.core.prompts.prompt_ids`): through the tokenizer's chat template when it has one (SmolLM2 and
  its real zoo; the testbed's tiny bases, whose template writes ``<s>prompt\\n``), else ``tokenizer(prompt +
  "\\n")`` (a base that needs BOS gets it from its tokenizer, as
  :func:`hub.services.inference.service.encode_prompt` does); answers end with EOS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hub.core.adapter import LoraAdapter
from hub.core.errors import InvalidInputError
from hub.core.imports import import_once
from hub.core.prompts import PROMPT_SUFFIX, prompt_ids
from hub.services import validation as v

MAX_EXAMPLES = 128

Objective = Callable[[LoraAdapter], float]


class ServedPrompts:
    """A tokenizer view for :func:`lm_loss_objective`: prompts in the base's served format.

    ``lm_loss_objective`` tokenises a prompt with ``tokenizer(text)`` and an answer with
    ``tokenizer(text, add_special_tokens=False)``; this view gives a prompt the ids
    :func:`hub.core.prompts.prompt_ids` gives it (a prompt that already ends with the suffix keeps one).
    """

    def __init__(self, tokenizer: Any, suffix: str = PROMPT_SUFFIX) -> None:
        self.tokenizer, self.suffix = tokenizer, suffix
        self.eos_token_id = getattr(tokenizer, "eos_token_id", None)
        self.pad_token_id = getattr(tokenizer, "pad_token_id", None)

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        if not add_special_tokens:  # an answer
            return {"input_ids": list(self.tokenizer(text, add_special_tokens=False)["input_ids"])}
        if self.suffix and text.endswith(self.suffix):
            text = text[: -len(self.suffix)]
        return {"input_ids": prompt_ids(self.tokenizer, text, suffix=self.suffix)}


def source_examples(raw: bytes, key: str) -> list[dict[str, str]]:
    """The ``{"input", "output"}`` rows of one source's ``samples.jsonl``.

    Raises:
        InvalidInputError: malformed samples, or none at all (the message names the source).
    """
    rows = v.sample_pairs(raw)
    if not rows:
        raise InvalidInputError(f"{key} has no sample data (samples.jsonl); lorahub scores merges on the "
                                "sources' samples", field="sources")
    return rows


def balanced(per_source: Sequence[Sequence[Mapping[str, str]]], limit: int = MAX_EXAMPLES) -> list[dict[str, str]]:
    """The same number of examples from each source (the first rows), at most ``limit`` in all."""
    if not per_source:
        return []
    each = max(1, min(min(len(rows) for rows in per_source), limit // len(per_source)))
    return [dict(r) for rows in per_source for r in rows[:each]]


def load_scorer(folder: str | Path, device: str = "cpu") -> tuple[Any, Any]:
    """The base model (float32, eval mode, on ``device``) and its tokenizer from a local folder.

    Raises:
        InvalidInputError: a folder transformers cannot load.
    """
    import torch
    AutoModelForCausalLM, AutoTokenizer = import_once("transformers", "AutoModelForCausalLM", "AutoTokenizer")

    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds for a bad folder
        raise InvalidInputError(f"cannot load the base model and tokenizer from {folder}: {e}") from None
    return model.to(device).eval(), tok


def build_objective(model: Any, tokenizer: Any, examples: Sequence[Mapping[str, str]], *,
                    batch_size: int = 16, max_length: int = 512) -> Objective:
    """``objective(adapter) -> float``: mean CE of ``model`` + adapter on the examples' answers (served format)."""
    from merging.objectives import lm_loss_objective

    return lm_loss_objective(model, ServedPrompts(tokenizer), examples, batch_size=batch_size,
                             max_length=max_length)
