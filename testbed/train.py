"""Training: base pre-training from scratch and LoRA training with PEFT, deterministic on CPU.

Format: ``<s>{prompt}\\n`` followed by ``{answer}</s>``; the loss is on the answer only; rows are
padded on the left and ``position_ids = attention_mask.cumsum(-1) - 1``; AdamW with linear warmup
and linear decay. Fresh seeded examples are drawn at every step.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from testbed.models import BaseRecipe, LoraRecipe
from testbed.tasks import ALPHABET, Task
from testbed.tokenizer import BOS, EOS, build_tokenizer

PAD_ID, BOS_ID, EOS_ID, SEP_ID = 256, 257, 258, 10
THREADS = 1
#: a LoRA run of 50+ steps whose mean loss over its last 10 steps ends above this diverged (a trained one
#: ends below 0.25): it is trained again from the same seed at half the learning rate, up to
#: DIVERGENCE_RETRIES times (deterministic: the same recipe diverges, and is retried, the same way)
DIVERGED_LOSS = 1.0
DIVERGENCE_RETRIES = 2
Progress = Callable[[int, int], None]

#: every character a task can output: the base must have seen each one as a target, since a LoRA
#: leaves the (tied) embeddings frozen and cannot teach the model to emit an unseen byte
PRETRAIN_ALPHABET = ALPHABET + "*#"
_COPY_CUES = ("copy", "echo", "say", "write out", "type this", "again")
#: neutral words the pre-training cues are made of: zoo cues are up to ~45 characters long, so the
#: base must have copied past cues of that length (at those positions) before a LoRA specialises it
_FILLER = tuple(
    "please the text this that now it again exactly as is same for me with each every letter "
    "character word string input line back out down here just simply kindly write type copy echo "
    "say keep leave plain one two three four five 1 2 3 4 5 by to of and a an all on in up".split()
)
_OPCODES = {"reverse": "op1", "sort": "op2", "double": "op3"}
_OPS: dict[str, Callable[[str], str]] = {
    "copy": lambda s: s,
    "reverse": lambda s: s[::-1],
    "sort": lambda s: "".join(sorted(s)),
    "double": lambda s: "".join(c * 2 for c in s),
}
assert BOS == "<s>" and EOS == "</s>"


def swap_maps(n: int, pairs: int = 6) -> list[dict[str, str]]:
    """``n`` fixed substitution ops of the pre-training mix, each swapping ``pairs`` random character
    pairs (identity elsewhere). They are no zoo task; they teach the base to copy by *position* and
    pass each character through a cue-selected mapping, which is what a mapping LoRA then rewrites."""
    rng = random.Random("loom-testbed-swap-maps")
    maps = []
    for _ in range(n):
        chars = rng.sample(PRETRAIN_ALPHABET, 2 * pairs)
        m = {}
        for a, b in zip(chars[::2], chars[1::2], strict=True):
            m[a], m[b] = b, a
        maps.append(m)
    return maps


@contextlib.contextmanager
def fixed_threads(n: int = THREADS) -> Iterator[None]:
    """Run with a fixed intra-op thread count (CPU training is deterministic per thread count)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def prompt_ids(prompt: str) -> list[int]:
    """Token ids the model is given for ``prompt``: ``<s>`` + UTF-8 bytes + newline."""
    return [BOS_ID, *prompt.encode("utf-8"), SEP_ID]


def training_batch(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids``, ``attention_mask``, ``position_ids`` and ``labels`` from ``(ids, labels)`` rows."""
    from generation.taskvec import left_pad

    batch = left_pad([x for x, _ in rows], pad_id)
    batch["labels"] = left_pad([y for _, y in rows], -100)["input_ids"]
    return batch


def encode_batch(pairs: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids``, ``attention_mask``, ``position_ids`` and answer-only ``labels``."""
    rows = []
    for prompt, answer in pairs:
        p = prompt_ids(prompt)
        a = [*answer.encode("utf-8"), EOS_ID]
        rows.append((p + a, [-100] * len(p) + a))
    return training_batch(rows, PAD_ID)


def pretrain_pairs(recipe: BaseRecipe, rng: random.Random, n: int) -> list[tuple[str, str]]:
    """A batch of the generic pre-training corpus: the recipe's op mix over the whole alphabet.

    A cue is 0 to ``recipe.cue_words`` neutral words (a copy cue when none), as many in every row
    of a batch with ``recipe.bucket_cues`` (less padding to compute); the positional ops
    (``reverse``, ``sort``, ``double``) put their opaque op code at a random place among them.
    """
    names = [op for op, _ in recipe.ops]
    weights = [w for _, w in recipe.ops]
    maps = swap_maps(recipe.swap_maps) if "swap" in names else []
    batch_words = rng.randint(0, recipe.cue_words) if recipe.bucket_cues else 0  # one cue length per batch
    out = []
    for _ in range(n):
        op = rng.choices(names, weights)[0]
        x = "".join(rng.choice(PRETRAIN_ALPHABET) for _ in range(rng.randint(1, recipe.max_len)))
        n_words = batch_words if recipe.bucket_cues else rng.randint(0, recipe.cue_words)
        words = [rng.choice(_FILLER) for _ in range(n_words)]
        if op == "copy":
            words = words or [rng.choice(_COPY_CUES)]
            y = x
        elif op == "swap":
            j = rng.randrange(len(maps))
            words.insert(rng.randint(0, len(words)), f"op{4 + j}")
            y = "".join(maps[j].get(c, c) for c in x)
        else:
            words.insert(rng.randint(0, len(words)), _OPCODES[op])
            y = _OPS[op](x)
        out.append((f"{x} | {' '.join(words)}", y))
    return out


def answer_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens: the value ``model(**batch).loss`` gives, but the LM
    head only runs where an answer token is predicted (rows are left padded, so every answer ends
    at the last column and the prompt-only columns need no logits)."""
    labels = batch["labels"]  # (B, T)
    first = int((labels != -100).any(0).nonzero()[0])  # first column holding an answer token
    keep = labels.shape[1] - first + 1  # logits at columns first-1 .. T-1
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        logits_to_keep=keep,
    ).logits  # (B, keep, V)
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, first:].reshape(-1), ignore_index=-100
    )


def _schedule(opt: torch.optim.Optimizer, warmup: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def train_loop(
    model: Any,
    params: list[torch.nn.Parameter],
    batches: Callable[[int], list[tuple[str, str]]],
    *,
    steps: int,
    lr: float,
    warmup: int,
    on_step: Callable[[int, float], None] | None = None,
    encode: Callable[[Sequence[tuple[str, str]]], dict[str, torch.Tensor]] = encode_batch,
) -> float:
    """AdamW over ``params`` for ``steps`` steps; ``batches(step)`` gives (prompt, answer) pairs, which
    ``encode`` turns into a left-padded batch with answer-only labels (default: the byte format).

    Returns the mean loss of the last 10 steps.
    """
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    sched = _schedule(opt, warmup, steps)
    model.train()
    losses: list[float] = []
    for step in range(steps):
        loss = answer_loss(model, encode(batches(step)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if on_step:
            on_step(step + 1, losses[-1])
    model.eval()
    tail = losses[-10:]
    return sum(tail) / len(tail)


def pretrain_base(
    recipe: BaseRecipe, out_dir: str | Path, *, seed: int = 0, progress: Progress | None = None
) -> dict[str, Any]:
    """Pre-train a base from scratch on the generic corpus; save model + tokenizer to ``out_dir``."""
    from transformers import AutoModelForCausalLM

    with fixed_threads(recipe.threads):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(recipe.config())
        rng = random.Random(f"pretrain|{recipe.model_id}|{seed}")
        loss = train_loop(
            model,
            list(model.parameters()),
            lambda _s: pretrain_pairs(recipe, rng, recipe.batch),
            steps=recipe.steps,
            lr=recipe.lr,
            warmup=recipe.warmup,
            on_step=(lambda s, _l: progress(s, recipe.steps)) if progress else None,
        )
    out = Path(out_dir)
    model.config.name_or_path = recipe.model_id
    model.save_pretrained(str(out), safe_serialization=True)
    build_tokenizer().save_pretrained(str(out))
    return {"final_loss": loss}


def load_base(folder: str | Path) -> Any:
    """A saved base model in eval mode."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder)).eval()


def train_lora(
    base_dir: str | Path,
    base_id: str,
    task: Task,
    recipe: LoraRecipe,
    out_dir: str | Path,
    *,
    seed: int = 0,
    steps: int | None = None,
    checkpoints: Sequence[float] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train one rank-``r`` LoRA with PEFT on ``task``; save PEFT folders.

    The final adapter goes to ``out_dir``; with ``checkpoints`` (fractions of training, e.g.
    0.5, 0.75) intermediate adapters go to ``out_dir/checkpoints/step-<n>``.

    A run that diverged (see ``DIVERGED_LOSS``) is trained again at half the learning rate.

    Returns:
        ``{"final_loss", "steps", "checkpoints": [{"step", "fraction", "dir"}], "lr": the learning rate
        of the kept run, "attempts"}``.
    """
    from peft import LoraConfig, get_peft_model

    n_steps = steps or recipe.steps
    marks = {max(1, round(f * n_steps)): f for f in (checkpoints or ()) if f < 1.0}
    out = Path(out_dir)
    lr = recipe.lr
    with fixed_threads():
        for attempt in range(DIVERGENCE_RETRIES + 1):
            saved: list[dict[str, Any]] = []
            base = load_base(base_dir)
            torch.manual_seed(seed)
            cfg = LoraConfig(
                r=recipe.r,
                lora_alpha=recipe.alpha,
                target_modules=list(recipe.targets),
                lora_dropout=0.0,
                task_type="CAUSAL_LM",
            )
            model = get_peft_model(base, cfg)
            model.peft_config["default"].base_model_name_or_path = base_id
            params = [p for p in model.parameters() if p.requires_grad]

            def batches(step: int) -> list[tuple[str, str]]:
                return [(e.prompt, e.output) for e in task.examples(recipe.batch, seed * 100_003 + step)]

            def on_step(step: int, _loss: float, model: Any = model, saved: list = saved) -> None:
                if step in marks:
                    d = out / "checkpoints" / f"step-{step}"
                    model.save_pretrained(str(d), safe_serialization=True, save_embedding_layers=False)
                    saved.append({"step": step, "fraction": marks[step], "dir": d})
                    model.train()
                if progress:
                    progress(step, n_steps)

            loss = train_loop(model, params, batches, steps=n_steps, lr=lr, warmup=recipe.warmup, on_step=on_step)
            if loss <= DIVERGED_LOSS or n_steps < 50 or attempt == DIVERGENCE_RETRIES:  # < 50: a smoke run
                break
            lr /= 2  # diverged (measured: full-size caesar_3 at 1e-2 ended at loss 3.06): again, half the rate
        model.save_pretrained(str(out), safe_serialization=True, save_embedding_layers=False)
    saved.append({"step": n_steps, "fraction": 1.0, "dir": out})
    return {"final_loss": loss, "steps": n_steps, "checkpoints": saved, "lr": lr, "attempts": attempt + 1}
