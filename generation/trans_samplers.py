"""Trans-LoRA's candidate generators: synthetic prompts sampled from the *target* base, seeded by an
adapter's sample prompts (``synthesize`` phase of :mod:`generation.trans_lora`).

- :class:`RewriteSampler` (the default) rewrites seed prompts token by token with the model;
- :class:`PrefixSampler` continues a random prefix of a seed's input;
- :func:`well_formed` is the parse check every candidate passes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from generation.decode import decode
from generation.taskvec import TextCodec, left_pad


class Sampler(Protocol):
    """Produces ``n`` candidate prompts from seed prompts."""

    def __call__(self, seeds: Sequence[str], n: int, rng: random.Random) -> list[str]: ...


def split_seed(seed: str, separator: str, cue_first: bool = False) -> tuple[str, str]:
    """``(input, instruction)`` of a seed prompt: ``"<input><sep><cue>"``, or ``"<cue><sep><input>"`` when
    ``cue_first`` (the real zoo's ``"Convert to snake_case: Big Red Apple"``); no separator: all input."""
    if separator not in seed:
        return seed, ""
    a, b = seed.split(separator, 1)
    return (b, a) if cue_first else (a, b)


def join_seed(x: str, cue: str, separator: str, cue_first: bool = False) -> str:
    """The prompt of an input and an instruction, in the seeds' order (:func:`split_seed`)."""
    if not cue:
        return x
    return f"{cue}{separator}{x}" if cue_first else f"{x}{separator}{cue}"


@dataclass
class PrefixSampler:
    """Candidates from a model: continue a random prefix of a seed prompt's input with sampling,
    cut at the separator, and re-attach a seed prompt's instruction (before the input when ``cue_first``)."""

    model: Any
    codec: TextCodec
    separator: str = " | "
    temperature: float = 1.0
    max_new_tokens: int = 16
    cue_first: bool = False

    def __call__(self, seeds: Sequence[str], n: int, rng: random.Random) -> list[str]:
        parts = [s.split(self.separator, 1) for s in seeds]
        rows, cues = [], []
        for _ in range(n):
            if self.cue_first:
                x, cue = split_seed(rng.choice(seeds), self.separator, True)
            else:
                x, cue = rng.choice(parts) if all(len(p) == 2 for p in parts) else (rng.choice(seeds), "")
            k = rng.randint(0, max(0, len(x) // 2))
            rows.append(self.codec.raw(join_seed(x[:k], cue, self.separator, self.cue_first)))
            cues.append((x[:k], cue))
        g = torch.Generator().manual_seed(rng.getrandbits(31))
        nl = self.codec.tokenizer.encode("\n", add_special_tokens=False)
        outs = decode(self.model, self.codec, rows, max_new_tokens=self.max_new_tokens,
                      temperature=self.temperature, generator=g, stop_ids=nl)
        cands = []
        for (prefix, cue), cont in zip(cues, outs, strict=True):
            text = (prefix + cont) if self.cue_first else (prefix + cont).split(self.separator, 1)[0]
            cands.append(join_seed(text, cue, self.separator, self.cue_first))
        return cands


def unprintable_ids(tok: Any) -> list[int]:
    """Token ids that do not decode, alone, to printable text (specials, control bytes, partial UTF-8)."""
    special = {int(i) for i in getattr(tok, "all_special_ids", [])}
    out = []
    for i in range(len(tok)):
        text = "" if i in special else tok.decode([i])
        if not text or not text.isprintable() or "\ufffd" in text:
            out.append(i)
    return out


@dataclass
class RewriteSampler:
    """Candidates from a model *rewriting* seed prompts: each token of a seed's input is kept, or with
    probability ``rate`` (drawn per candidate from ``rates``) replaced by a token the model samples
    given the candidate so far (left to right); the seed's instruction is re-attached, its tokens
    rewritten the same way with a share drawn from ``cue_rates`` (default: kept as they are).

    Every new token comes from the model, restricted to tokens that are printable text on their own
    (no special, control or partial UTF-8 tokens: a prompt is one printable line); the seeds fix the
    format (instruction, length up to ``length_jitter`` tokens more or less than the seed's, so also
    longer than the longest seed: a handful of seeds rarely holds the task's longest input, and a
    student that never saw one stops early; added positions are always sampled).
    ``repetition_penalty`` (CTRL-style, as in ``transformers``' ``generate``) damps
    tokens already in the candidate: a tiny base tends to repeat what it has just seen, and
    repetitive synthetic inputs teach the student to stutter. ``cue_first``: the seeds read
    ``"<instruction><sep><input>"`` (the real zoo's requests), and candidates are written that way.
    """

    model: Any
    codec: TextCodec
    separator: str = " | "
    temperature: float = 1.0
    rates: tuple[float, float] = (0.3, 1.0)
    repetition_penalty: float = 1.0
    length_jitter: int = 0
    cue_rates: tuple[float, float] = (0.0, 0.0)
    cue_first: bool = False
    _banned: list[int] | None = field(default=None, init=False, repr=False)

    @torch.no_grad()
    def __call__(self, seeds: Sequence[str], n: int, rng: random.Random) -> list[str]:
        tok = self.codec.tokenizer
        parts = [split_seed(s, self.separator, self.cue_first) for s in seeds]
        picks = [rng.choice(parts) for _ in range(n)]
        src: list[list[int]] = []  # per candidate: token ids, -1 where the model fills a new position
        keep: list[list[bool]] = []
        starts: list[int] = []  # where the instruction part begins (repetition is penalised per part)
        sep = tok.encode(self.separator, add_special_tokens=False)
        for x, cue in picks:
            ids = tok.encode(x, add_special_tokens=False) or [self.codec.pad_id]
            size = max(1, len(ids) + rng.randint(-self.length_jitter, self.length_jitter))
            body = ids[:size] + [-1] * (size - len(ids))
            r, rc = rng.uniform(*self.rates), rng.uniform(*self.cue_rates)
            k = [i >= 0 and rng.random() >= r for i in body]
            starts.append(len(body) + len(sep))
            if cue and self.cue_first:  # the instruction, the separator, then the input
                cue_ids = tok.encode(cue, add_special_tokens=False)
                starts[-1] = len(cue_ids) + len(sep)
                body, k = cue_ids + sep + body, [rng.random() >= rc for _ in cue_ids] + [True] * len(sep) + k
            elif cue:
                cue_ids = tok.encode(cue, add_special_tokens=False)
                body, k = body + sep + cue_ids, k + [True] * len(sep) + [rng.random() >= rc for _ in cue_ids]
            src.append(body)
            keep.append(k)
        g = torch.Generator().manual_seed(rng.getrandbits(31))
        vocab = int(self.model.get_output_embeddings().weight.shape[0])
        if self._banned is None:
            self._banned = unprintable_ids(tok)
        # banned: unprintable tokens, and rows past the tokenizer's vocabulary (a tokenizer may also
        # know more tokens than the model has rows, e.g. an added unk token)
        allowed = torch.ones(vocab, dtype=torch.bool)
        allowed[[i for i in self._banned if i < vocab]] = False
        allowed[len(tok):] = False
        seen = torch.zeros((n, vocab), dtype=torch.bool)  # tokens already in the current part of a row
        bos = list(tok.encode(""))  # what the tokenizer puts before any text (BOS for Llama-like ones)
        rows = [list(bos) for _ in range(n)]
        for t in range(max(len(s) for s in src)):
            live = [i for i in range(n) if t < len(src[i])]
            draw = [i for i in live if not keep[i][t]]
            for i in live:
                if t == starts[i]:
                    seen[i] = False
            sampled: dict[int, int] = {}
            if draw:
                b = left_pad([rows[i] if rows[i] else [self.codec.pad_id] for i in draw], self.codec.pad_id)
                logits = self.model(**b, logits_to_keep=1).logits[:, -1, :vocab].float()  # (B, V)
                if self.repetition_penalty != 1.0:
                    pen = torch.where(logits > 0, logits / self.repetition_penalty, logits * self.repetition_penalty)
                    logits = torch.where(seen[draw], pen, logits)
                logits = logits.masked_fill(~allowed, float("-inf"))
                nxt = torch.multinomial(torch.softmax(logits / self.temperature, -1), 1, generator=g)[:, 0]
                sampled = dict(zip(draw, nxt.tolist(), strict=True))
            for i in live:
                tok_id = int(sampled.get(i, src[i][t]))
                rows[i].append(tok_id)
                if 0 <= tok_id < vocab:
                    seen[i, tok_id] = True
        out = [tok.decode(r[len(bos):], skip_special_tokens=True) for r in rows]
        return out


def well_formed(c: str, sep: str, cue_first: bool = False) -> bool:
    """A parseable prompt: a non-blank input, one line, printable, valid UTF-8 (no U+FFFD)."""
    x = split_seed(c, sep, cue_first)[0]
    return bool(x.strip()) and "\n" not in c and c.isprintable() and "\ufffd" not in c
