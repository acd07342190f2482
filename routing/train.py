"""Gate training as a pure function (spec §7.6): no DB, no job runner; a progress callback.

``train_router`` injects the preset into ``model``, trains on the experts' own sample data
(``{"input", "output"}`` pairs per expert; the expert index is the task label where the preset
uses one, MeteoRA), snapshots a :class:`~routing.checkpoint.RouterState`, and removes the routed
modules again so ``model`` is left as it came. The job runner and the registry artifact
(kind "router") wrap this later.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hub.core.adapter import LoraAdapter
from hub.core.errors import InvalidInputError
from hub.core.prompts import answer_ids, prompt_ids, served_text
from routing import losses
from routing.checkpoint import RouterState, router_state
from routing.features import Embed, request_features
from routing.presets import ROUTERS, build_router, make_config

Example = Mapping[str, str]
Encode = Callable[[str], list[int]]


Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``trainable`` overrides the preset's (``gate``, ``gate+experts``)."""

    steps: int = 100
    lr: float = 5e-3
    batch_size: int = 8
    max_length: int = 128
    weight_decay: float = 0.01
    warmup: float = 0.05
    seed: int = 0
    trainable: str | None = None
    loss_on_prompt: bool = False
    pad_id: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise InvalidInputError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup < 1:
            raise InvalidInputError(f"warmup must be in [0, 1), got {self.warmup}")


@dataclass(frozen=True)
class _Format:
    """How an example becomes ids: its prompt, its answer, and the request text the router reads."""

    prompt: Encode
    answer: Encode
    text: Callable[[str], str]


def _encoder(tokenizer: Any) -> Encode:
    if hasattr(tokenizer, "encode"):
        return lambda s: list(tokenizer.encode(s, add_special_tokens=False))
    if callable(tokenizer):
        return tokenizer
    raise InvalidInputError("tokenizer must have .encode(text) or be a callable text -> token ids")


def _format(tokenizer: Any, served: bool) -> _Format:
    if served:
        if not callable(getattr(tokenizer, "decode", None)):
            raise InvalidInputError("served=True needs a Hugging Face tokenizer (the base's chat template or BOS)")
        return _Format(lambda s: prompt_ids(tokenizer, s), lambda s: answer_ids(tokenizer, s),
                       lambda s: served_text(tokenizer, s))
    encode = _encoder(tokenizer)
    return _Format(encode, encode, lambda s: s)


def _examples(data: Sequence[Sequence[Example]], n: int, fmt: _Format, cfg: TrainConfig) -> list[tuple]:
    if len(data) != n:
        raise InvalidInputError(f"need one list of examples per expert ({n}), got {len(data)}")
    out = []
    for i, exs in enumerate(data):
        if not exs:
            raise InvalidInputError(f"expert #{i} has no training examples")
        for j, ex in enumerate(exs):
            if not isinstance(ex, Mapping) or not isinstance(ex.get("input"), str) or \
                    not isinstance(ex.get("output"), str):
                raise InvalidInputError(f"example {j} of expert #{i} must be {{'input': str, 'output': str}}")
            p, o = fmt.prompt(ex["input"]), fmt.answer(ex["output"])
            ids = (p + o)[: cfg.max_length]
            labels = (list(ids) if cfg.loss_on_prompt else [-100] * len(p) + o)[: cfg.max_length]
            if not ids:
                raise InvalidInputError(f"example {j} of expert #{i} is empty")
            out.append((ids, labels, i, fmt.text(ex["input"]), ex["input"]))
    return out


def _intent_pairs(items: Sequence[tuple], experts: int, count: int, fmt: _Format, served: bool, cfg: TrainConfig
                  ) -> list[tuple]:
    """``count`` synthetic two-task requests (MeteoRA ``mix_intents``): the prompts of two examples of different
    experts joined by a space, no answer (labels ignored: the composed answer is unknown), tagged with both
    experts. Items as :func:`_examples` makes them, the task field an ``(a, b)`` pair; ``served``: the joined
    request is one prompt in the served format."""
    by_expert: dict[int, list[tuple]] = {}
    for it in items:
        by_expert.setdefault(it[2], []).append(it)
    if experts < 2:
        raise InvalidInputError("mix_intents needs at least two experts")
    rng = random.Random(f"mix_intents|{cfg.seed}")
    out = []
    for _ in range(count):
        a, b = rng.sample(range(experts), 2)
        xa, xb = rng.choice(by_expert[a])[4], rng.choice(by_expert[b])[4]
        joined = f"{xa} {xb}"
        ids = (fmt.prompt(joined) if served else fmt.prompt(xa) + fmt.prompt(xb))[: cfg.max_length]
        out.append((ids, [-100] * len(ids), (a, b), fmt.text(joined), joined))
    return out


def collate(items: Sequence[tuple], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad (ids, labels, task) items into input_ids, attention_mask, labels, task_ids."""
    t = max(len(it[0]) for it in items)
    ids = torch.full((len(items), t), pad_id, dtype=torch.long)
    labels = torch.full((len(items), t), -100, dtype=torch.long)
    am = torch.zeros(len(items), t, dtype=torch.long)
    for r, (x, y, *_) in enumerate(items):
        ids[r, : len(x)], labels[r, : len(y)], am[r, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "attention_mask": am, "labels": labels,
            "task_ids": torch.tensor([it[2] for it in items], dtype=torch.long)}


def train_router(model: nn.Module, experts: Sequence[LoraAdapter], preset: str, config: Any = None, *,
                 examples: Sequence[Sequence[Example]], tokenizer: Any, names: Sequence[str] | None = None,
                 train: TrainConfig | None = None, progress: Progress | None = None,
                 embed: Embed | None = None, served: bool = False) -> RouterState:
    """Train the gates of ``preset`` over ``experts`` and return the trained router state.

    Args:
        model: the base causal LM (restored to its original modules on return).
        experts: the adapters, in bank order; ``names`` their ids (stored in the checkpoint).
        preset / config: a registered router preset and its config (dict or config object).
        examples: per expert, a list of ``{"input", "output"}``; the list index is the task label.
        tokenizer: an HF tokenizer or a callable text -> token ids.
        train: optimisation settings; ``progress`` gets ``{"step", "steps", "loss", "lm", "aux"}``.
        embed: texts -> (N, D) sentence embeddings; required when the config has ``features="embedding"``
            (each example's input is embedded once, the same way the server embeds a request).
        served: encode each example as Loom serves and trains adapters on the base
            (:mod:`hub.core.prompts`: the chat template, or the prompt and a newline; the answer and EOS), and
            read the request text the server reads; ``tokenizer`` must then be the base's HF tokenizer. False:
            ``tokenizer.encode(text, add_special_tokens=False)`` of the raw input and output.

    Raises:
        InvalidInputError: a preset that cannot be trained, bad examples or settings.
    """
    entry = ROUTERS.get(preset)
    if not entry.trainable:
        raise InvalidInputError(f"router {preset!r} is training-free; nothing to train")
    cfg, tc = make_config(preset, config), train or TrainConfig()
    fmt = _format(tokenizer, served)
    items = _examples(examples, len(experts), fmt, tc)
    mix = float(getattr(cfg, "mix_intents", 0.0))
    n_mix = min(max(1, round(mix * tc.batch_size)), tc.batch_size - 1) if mix else 0  # >= 1 real row (LM loss)
    if mix and n_mix < 1:
        raise InvalidInputError(f"mix_intents needs batch_size >= 2 (a joined request and a real example), got "
                                f"{tc.batch_size}")
    pairs = _intent_pairs(items, len(experts), len(items), fmt, served, tc) if n_mix else []
    feats: torch.Tensor | None = None
    if getattr(cfg, "features", "site_input") == "embedding":
        if embed is None:
            raise InvalidInputError(f"router {preset!r} with features='embedding' needs an embed function")
        feats = request_features(embed, [it[3] for it in items + pairs], cfg)
    torch.manual_seed(tc.seed)
    rng = random.Random(tc.seed)
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    routed = build_router(model, experts, preset, cfg, names=names)
    try:
        routed.set_trainable(str(tc.trainable or getattr(cfg, "trainable", "gate")))
        params = [p for p in routed.parameters("all") if p.requires_grad]
        if not params:
            raise InvalidInputError(f"router {preset!r} has no trainable parameters")
        opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
        warm = max(1, int(tc.warmup * tc.steps))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, tc.steps) / tc.steps)))
        routed.context.collect = True
        model.train()
        history: list[dict[str, Any]] = []
        for step in range(tc.steps):
            pick = [rng.randrange(len(items)) for _ in range(tc.batch_size - n_mix)]
            pick += [len(items) + rng.randrange(len(pairs)) for _ in range(n_mix)]
            rows = [items[j] if j < len(items) else pairs[j - len(items)] for j in pick]
            batch = collate([(it[0], it[1], -100 if isinstance(it[2], tuple) else it[2]) for it in rows], tc.pad_id)
            targets: torch.Tensor = batch["task_ids"]
            if n_mix:  # (B, N) multi-hot: one expert for a real example, both for a joined pair
                targets = torch.zeros(len(rows), len(experts))
                for r, it in enumerate(rows):
                    targets[r, list(it[2]) if isinstance(it[2], tuple) else it[2]] = 1.0
            routed.context.clear_records()
            if feats is not None:
                routed.set_features(feats[pick])
            out = routed(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
            aux = entry.aux_loss(routed, targets)
            if getattr(cfg, "task_ce", 0.0) > 0:
                aux = aux + cfg.task_ce * losses.expert_ce(routed.context.records, batch["task_ids"], len(experts),
                                                           routed.context.token_mask)
            loss = out.loss + aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            routed.update_balance_bias()  # once per micro-step (SMoRA)
            rec = {"step": step + 1, "steps": tc.steps, "loss": float(loss.detach()), "lm": float(out.loss.detach()),
                   "aux": float(aux.detach())}
            history.append(rec)
            if progress is not None:
                progress(rec)
        routed.context.clear_records()
        routed.context.collect = False
        routed.set_features(None)
        metrics = {"steps": tc.steps, "final_loss": history[-1]["loss"], "first_loss": history[0]["loss"],
                   "train": {k: v for k, v in vars(tc).items()}}
        return router_state(routed, experts, metrics=metrics)
    finally:
        routed.remove()
        model.train(was_training)
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def gate_accuracy(routed: Any, batch: Mapping[str, torch.Tensor]) -> float:
    """Fraction of (site, real token) gate argmaxes equal to the example's expert index."""
    routed.context.collect = True
    routed.context.clear_records()
    with torch.no_grad():
        routed(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    labels = batch["task_ids"].repeat_interleave(batch["input_ids"].shape[1])
    mask = batch["attention_mask"].reshape(-1).bool()
    hits = total = 0
    for recs in routed.context.records.values():
        for r in recs:
            if r.logits is not None and r.logits.shape[0] == labels.shape[0]:
                hits += int((r.logits.argmax(-1) == labels)[mask].sum())
                total += int(mask.sum())
    routed.context.collect = False
    return hits / max(total, 1)
