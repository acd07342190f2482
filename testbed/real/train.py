"""LoRA training on a real model, in the format it is served in: the tokenizer's chat template on a chat model.

A row is ``apply_chat_template([user: prompt], add_generation_prompt=True)`` (exactly the ids Loom's
``/v1/chat/completions`` and transformers give the model; on a base without a chat template the prompt and a
newline, :func:`hub.core.prompts.prompt_ids`) followed by the answer and the template's end of turn
(``eos``); the loss is on the answer only. Batches are left padded with
``position_ids = attention_mask.cumsum(-1) - 1``; AdamW with warmup and linear decay
(:func:`testbed.train.train_loop`), on a fixed number of threads, seeded: the same recipe gives the
same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from hub.core.errors import InvalidInputError
from hub.core.prompts import answer_ids, prompt_ids
from testbed.real.tasks import RealTask


@dataclass(frozen=True)
class RealLoraRecipe:
    """How every adapter of the real zoo is trained (PEFT LoRA on the attention projections)."""

    r: int = 8
    alpha: int = 16
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    steps: int = 30
    batch: int = 8
    lr: float = 2e-3
    warmup: int = 3
    threads: int = 1
    task_steps: tuple[tuple[str, int], ...] = ()  # per-task overrides, ``(task name, steps)``

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1 or self.threads < 1:
            raise InvalidInputError(f"steps, batch and threads must be >= 1, got {self.steps}, {self.batch}, "
                                    f"{self.threads}")

    def steps_for(self, task: str) -> int:
        return dict(self.task_steps).get(task, self.steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def served_encoder(tokenizer: Any) -> Callable[[Sequence[tuple[str, str]]], dict[str, torch.Tensor]]:
    """``encode(pairs)`` for :func:`testbed.train.train_loop`: prompts in the base's format
    (:func:`hub.core.prompts.prompt_ids`: chat-templated on a chat base), answers ending in EOS."""
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)

    def encode(pairs: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
        from testbed.train import training_batch

        rows = []
        for prompt, answer in pairs:
            p = prompt_ids(tokenizer, prompt)
            a = answer_ids(tokenizer, answer)
            rows.append((p + a, [-100] * len(p) + a))
        return training_batch(rows, pad)

    return encode


def train_real_lora(
    base_dir: str | Path,
    base_id: str,
    task: RealTask,
    recipe: RealLoraRecipe,
    out_dir: str | Path,
    *,
    seed: int = 0,
    steps: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Train one LoRA for ``task`` on the model in ``base_dir`` (chat-templated requests on a chat model, the
    prompt and a newline on a base without a template); save the PEFT folder to ``out_dir``.

    Returns:
        ``{"final_loss", "steps"}`` (the mean loss of the last 10 steps).
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from testbed.train import fixed_threads, train_loop

    n_steps = steps or recipe.steps_for(task.name)
    with fixed_threads(recipe.threads):
        tok = AutoTokenizer.from_pretrained(str(base_dir))
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32).eval()
        torch.manual_seed(seed)
        cfg = LoraConfig(r=recipe.r, lora_alpha=recipe.alpha, target_modules=list(recipe.targets), lora_dropout=0.0,
                         task_type="CAUSAL_LM")
        model = get_peft_model(base, cfg)
        model.peft_config["default"].base_model_name_or_path = base_id
        params = [p for p in model.parameters() if p.requires_grad]

        def batches(step: int) -> list[tuple[str, str]]:
            return [(e.prompt, e.output) for e in task.examples(recipe.batch, seed * 100_003 + step)]

        loss = train_loop(model, params, batches, steps=n_steps, lr=recipe.lr, warmup=recipe.warmup,
                          on_step=(lambda s, _l: progress(s, n_steps)) if progress else None,
                          encode=served_encoder(tok))
        model.save_pretrained(str(out_dir), safe_serialization=True, save_embedding_layers=False)
    return {"final_loss": loss, "steps": n_steps}
