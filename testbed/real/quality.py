"""Scoring anything that answers chat requests on the real zoo's base: adapters, merges, routers, generated LoRAs.

:class:`RealScorer` loads SmolLM2 (or any base folder) once and answers user messages greedily in the base's
prompt format (:func:`hub.core.prompts.prompt_ids`: the chat template, the ids ``/v1/chat/completions`` gives
the model; a base without one, Gemma 3 270M's GGUF, gets the prompt and a newline), with the one decoder
(:func:`generation.decode.decode_ids`), so a plain model, a routed model and a model with a LoRA merged into
its weights are decoded the same way. ``with_adapter`` adds a :class:`~hub.core.adapter.LoraAdapter`'s deltas
to the base weights and restores the exact original weights afterwards, so one loaded model serves every
merged, generated or own adapter in turn.

    scorer = RealScorer.load(zoo.base_a.dir)
    data = eval_set(["snake_case", "sentiment"], n=20, split="train")
    with scorer.with_adapter(load_peft(zoo.adapter("snake_case").dir)):
        acc = scorer.accuracy(data)["snake_case"]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hub.core.adapter import LoraAdapter
from hub.core.prompts import prompt_ids
from testbed.real.tasks import Example, get_task

#: evaluation inputs are drawn from a stream disjoint from training (training uses seed * 100_003 + step)
EVAL_SEED = 1_000_003 + 1234
Answer = Callable[[list[str], int], list[str]]  # (prompts, max new tokens) -> answers


def eval_set(tasks: Sequence[str], n: int, split: str, seed: int = EVAL_SEED) -> dict[str, list[Example]]:
    """``n`` seeded examples per task whose phrasings come from ``split`` (``train``, ``heldout``, ``all``)."""
    return {t: get_task(t).examples(n, seed, split) for t in tasks}


@dataclass
class RealScorer:
    """A base and its tokenizer, answering user messages greedily in its prompt format (batched, left padded)."""

    model: Any
    tokenizer: Any
    base_id: str
    batch_size: int = 16

    @classmethod
    def load(cls, folder: str | Path, base_id: str | None = None, batch_size: int = 16) -> RealScorer:
        """The base model (float32, eval mode) and tokenizer of a local folder."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
        if base_id:
            model.config.name_or_path = base_id  # router checkpoints and compat checks name the hub id
        return cls(model, tok, base_id or str(folder), batch_size)

    @property
    def pad_id(self) -> int:
        pid = self.tokenizer.pad_token_id
        return int(pid if pid is not None else self.tokenizer.eos_token_id)

    def max_new(self, answers: Sequence[str]) -> int:
        """Tokens to decode: the longest expected answer plus 4 (a longer answer cannot be an exact match)."""
        return max(len(self.tokenizer.encode(a, add_special_tokens=False)) for a in answers) + 4

    def answers(self, prompts: Sequence[str], *, max_new_tokens: int = 32, model: Any = None,
                before_batch: Callable[[list[str]], None] | None = None, **forward_kwargs: Any) -> list[str]:
        """Greedy answers to user messages ``prompts``.

        Args:
            model: what to decode with (default: the base, with whatever adapter is merged into it).
            before_batch: called with each batch's prompts before it is decoded (routers that read the request).
            forward_kwargs: passed to every forward call (e.g. PEFT's ``adapter_names``).
        """
        from generation.decode import decode_ids

        m = self.model if model is None else model
        out: list[str] = []
        eos = int(self.tokenizer.eos_token_id)
        for i in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[i:i + self.batch_size])
            if before_batch is not None:
                before_batch(chunk)
            kw = {k: (v[i:i + self.batch_size] if isinstance(v, list) else v) for k, v in forward_kwargs.items()}
            rows = decode_ids(m, [prompt_ids(self.tokenizer, p) for p in chunk], pad_id=self.pad_id,
                              stop_ids=(eos,), max_new_tokens=max_new_tokens, batch_size=len(chunk), **kw)
            out.extend(self.tokenizer.decode(r, skip_special_tokens=True) for r in rows)
        return out

    def accuracy(self, data: Mapping[str, Sequence[Example]], answer: Answer | None = None) -> dict[str, float]:
        """Exact match per task of ``answer`` (default: the model as it is) on ``data``."""
        res: dict[str, float] = {}
        for task, exs in data.items():
            new = self.max_new([e.output for e in exs])
            fn = answer if answer is not None else self.answer_fn()
            got = fn([e.prompt for e in exs], new)
            t = get_task(task)
            res[task] = sum(t.score(g, e.output) for g, e in zip(got, exs, strict=True)) / len(exs)
        return res

    def answer_fn(self, model: Any = None, before_batch: Callable[[list[str]], None] | None = None,
                  adapter: str | None = None) -> Answer:
        """``(prompts, max_new) -> answers`` of ``model`` (a routed model, say; default the base as it is) with
        this scorer's tokenizer and batching; ``adapter``: the PEFT adapter name every row uses."""
        def fn(prompts: list[str], new: int) -> list[str]:
            kw = {"adapter_names": [adapter] * len(prompts)} if adapter is not None else {}
            return self.answers(prompts, model=model, before_batch=before_batch, max_new_tokens=new, **kw)

        return fn

    @contextlib.contextmanager
    def with_adapter(self, adapter: LoraAdapter | None) -> Iterator[None]:
        """The base with ``adapter``'s deltas added to its weights inside the block; the exact weights after."""
        if adapter is None:
            yield
            return
        from generation.decode import linear_shapes
        from hub.core.compat import check_against_base

        check_against_base(adapter, linear_shapes(self.model), self.base_id)
        mods = dict(self.model.named_modules())
        deltas = adapter.deltas()
        saved = {p: mods[p].weight.detach().clone() for p in deltas}
        try:
            with torch.no_grad():
                for p, d in deltas.items():
                    mods[p].weight += d.to(mods[p].weight.dtype)  # (out, in)
            yield
        finally:
            with torch.no_grad():
                for p, w in saved.items():
                    mods[p].weight.copy_(w)

    def adapter_accuracy(self, adapter: LoraAdapter | None, data: Mapping[str, Sequence[Example]]) -> dict[str, float]:
        """Exact match per task with ``adapter`` merged into the base (None: the base alone)."""
        with self.with_adapter(adapter):
            return self.accuracy(data)


def mean(values: Mapping[str, float] | Sequence[float]) -> float:
    vals = list(values.values()) if isinstance(values, Mapping) else list(values)
    return sum(vals) / len(vals) if vals else float("nan")


def finished_zoo(data_dir: str | Path, seed: int = 0) -> Any:
    """The real zoo's adapters that are already trained, as a :class:`testbed.zoo.Zoo` (read while a build runs).

    Measures a zoo whose build is still under way (``build_real_zoo`` writes ``manifest.json`` last); the
    adapters are those complete in ``<data_dir>/testbed/real-<hash>/adapters/``, in task order.
    """
    import hashlib
    import json

    from testbed.real.base import SMOLLM2_ID, smollm2_folder
    from testbed.real.tasks import TASKS
    from testbed.real.zoo import NAMESPACE, RECIPE, TRAIN_FACTS, real_zoo_hash
    from testbed.zoo import AdapterEntry, BaseEntry, Zoo

    base_dir, sha = smollm2_folder(data_dir)
    h = real_zoo_hash(RECIPE, seed, sha)
    root = Path(data_dir) / "testbed" / f"real-{h}"
    config = json.loads((base_dir / "config.json").read_text())
    base = BaseEntry(SMOLLM2_ID, config.get("model_type", "llama"), base_dir, 0, "A", config)
    entries = []
    for t in TASKS.values():
        d = root / "adapters" / t.name
        try:
            facts = json.loads((d / TRAIN_FACTS).read_text())
        except (OSError, ValueError):
            continue  # not trained yet (an adapter is renamed into place only when complete)
        if facts.get("steps") != RECIPE.steps_for(t.name):
            continue
        entries.append(AdapterEntry(t.name, SMOLLM2_ID, d, f"{NAMESPACE}/{t.name}", t.description, t.tags, "apache-2.0",
                                    d / "samples.jsonl",
                                    hashlib.sha256((d / "adapter_model.safetensors").read_bytes()).hexdigest(),
                                    family=t.family, param=t.param, held_out=t.held_out))
    return Zoo(root, "real", seed, h, (base,), tuple(entries), tuple(e.task for e in entries))
