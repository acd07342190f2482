"""Iteration-level (continuous) batching over a padded per-row KV cache, with per-row adapters and sampling.

:class:`ContinuousBatch` holds the rows being generated on one
:class:`~routing.batching.MixedAdapterModel`. Each :meth:`~ContinuousBatch.step` is ONE decode forward over
every running row, then each row samples its own next token (:mod:`routing.sampling`) and a finished row
leaves at once (its cache rows are dropped). New rows join between steps with :meth:`~ContinuousBatch.add`:
their prompts are prefilled together in one forward of their own (the running rows are not recomputed),
their first token is sampled from that prefill, and their cache is appended to the running one. Every row
keeps its adapter or mixture (per-row slot indices, the BGMV-style gathered LoRA of the routing engine),
``max_new_tokens``, temperature, ``top_p``, seed and stop conditions inside the one forward.

KV-cache layout: a **padded per-row cache**, the transformers ``DynamicCache`` of the model, ``(B, H, L, D)``
per layer, left padded, with a ``(B, L)`` attention mask and explicit per-row position ids. Why this and not
a paged cache with per-token adapter indices (Punica SGMV / vLLM):

* rotary position is applied before keys are cached, so a row's keys can sit at any column: joining is a
  left pad plus a concatenation on the batch axis, leaving is an index select, and columns that only hold
  padding after rows leave are cut off (the cache is never wider than its longest live row);
* it runs the unmodified transformers attention of every decoder (eager, SDPA) on CPU and GPU, so the
  served tokens stay exactly the ``transformers + PEFT`` greedy tokens (the parity oracle of the tests);
* the models served here are small (tiny and SmolLM2-class bases, tens of rows): padding waste is bounded by
  the spread of live lengths, whereas a paged layout needs custom attention kernels that CPU torch lacks.
The cost is that a join copies the running cache once (``torch.cat``); the tests and the serving bench
measure it against the window batcher. A decode step does not copy it: each layer's keys and values are views
of a buffer with spare columns (:class:`GrowingLayer`), so a step writes its one column in place, where
transformers' ``DynamicLayer`` concatenates the whole cache every step (O(length) per step per layer).

What runs the forward is a :class:`RowModel`: it sets the routing state of the rows of a forward, in batch
order, runs the model, and reads back what it must keep per row. :class:`MixedRows` does that for a
:class:`~routing.batching.MixedAdapterModel` (each row's adapter or mixture);
:class:`routing.routed_batch.RoutedRows` for a router preset's routed model (each row's request features,
request-level mixture and prefill-time sequence weights, kept in :attr:`Row.state` so they follow the row
through joins and leaves). The cache, join and leave code is the same for both.

Only full-attention ``DynamicLayer`` caches are handled (Llama, Mistral, Qwen2, SmolLM2 ...); another cache
layout raises :class:`~hub.core.errors.InvalidInputError` at the first join.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from hub.core.errors import InvalidInputError
from routing.sampling import SamplingParams, sample_rows


@dataclass(eq=False)
class Row:
    """One sequence being generated.

    Attributes:
        prompt_ids: the tokenised prompt. mixture: adapter name -> weight ({} = the base model).
        max_new_tokens: the completion limit. sampling: temperature / top_p / seed.
        stop_ids: token ids that end the row (EOS; not part of the output).
        on_token: called with each new token (not a stop id); returning False ends the row (a stop
            string was seen, or the client left). tokens: the new tokens so far.
        finish_reason: ``stop``, ``length`` or ``cancelled`` once the row left.
        state: per-row routing state owned by the :class:`RowModel` (request features, a request-level
            mixture, weights a sequence-level gate computed at prefill, gate statistics).
    """

    prompt_ids: list[int]
    mixture: dict[str, float]
    max_new_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop_ids: frozenset[int] = frozenset()
    on_token: Callable[[int], bool] | None = None
    tokens: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    generator: torch.Generator | None = None
    next_token: int = -1  # the sampled token not yet in the cache
    position: int = 0  # the position id of next_token
    state: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.prompt_ids:
            raise InvalidInputError("prompt must not be empty", field="prompt")
        if self.max_new_tokens < 1:
            raise InvalidInputError(f"max_tokens must be >= 1, got {self.max_new_tokens}", field="max_tokens")

    def cancel(self) -> None:
        """Mark the row cancelled: :meth:`ContinuousBatch.step` drops it before the next forward."""
        if self.finish_reason is None:
            self.finish_reason = "cancelled"


@runtime_checkable
class RowModel(Protocol):
    """What a :class:`ContinuousBatch` runs: ``begin`` sets the routing state of ``rows`` (the rows of the
    next forward, in batch order; ``prefill``: their prompts, on an empty cache), ``model`` is called, then
    ``end`` reads back per-row state (``tokens`` is the (B, T) mask of the forward's real input tokens).
    ``report`` is what a finished row answers: the adapters applied and per-site gate weights (or None)."""

    model: Any

    def begin(self, rows: Sequence[Row], prefill: bool) -> None: ...

    def end(self, rows: Sequence[Row], prefill: bool, tokens: torch.Tensor) -> None: ...

    def report(self, row: Row) -> tuple[dict[str, float], dict[str, list[float]] | None]: ...


class MixedRows:
    """The :class:`RowModel` of a :class:`~routing.batching.MixedAdapterModel`: each row's adapter or mixture."""

    def __init__(self, mixed: Any) -> None:
        self.mixed, self.model = mixed, mixed.model

    def begin(self, rows: Sequence[Row], prefill: bool) -> None:
        self.mixed.set_rows([r.mixture or None for r in rows])

    def end(self, rows: Sequence[Row], prefill: bool, tokens: torch.Tensor) -> None:
        return None

    def report(self, row: Row) -> tuple[dict[str, float], dict[str, list[float]] | None]:
        return dict(row.mixture), None


class ContinuousBatch:
    """The running rows of one model and their padded KV cache.

    Args:
        mixed: the :class:`~routing.batching.MixedAdapterModel` (its adapters already loaded), or any
            :class:`RowModel` (e.g. :class:`routing.routed_batch.RoutedRows`).
        pad_id: the token id written in padded columns (never attended to).
    """

    def __init__(self, mixed: Any, pad_id: int) -> None:
        self.mixed, self.pad_id = mixed, pad_id
        self.runner: RowModel = mixed if isinstance(mixed, RowModel) else MixedRows(mixed)
        self.rows: list[Row] = []
        self.cache: Any = None
        self.mask: torch.Tensor | None = None  # (B, L) long, 1 = a real cached token
        self.forwards = 0  # prefill and decode forwards run
        self.device = next(self.runner.model.parameters()).device

    def __len__(self) -> int:
        return len(self.rows)

    # -- joining --------------------------------------------------------------------------------
    @torch.no_grad()
    def add(self, rows: Sequence[Row]) -> list[Row]:
        """Prefill ``rows`` in one forward, sample their first tokens, join them; returns the ones that
        already finished (they never enter the running batch)."""
        rows = [r for r in rows if r.finish_reason is None]
        if not rows:
            return []
        width = max(len(r.prompt_ids) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding; positions count real tokens only
            ids[i, width - len(r.prompt_ids):] = torch.tensor(r.prompt_ids, dtype=torch.long)
            mask[i, width - len(r.prompt_ids):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        self.runner.begin(rows, True)
        out = self.runner.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                position_ids=pos.to(self.device), cache=_growing_cache(self.runner.model),
                                use_cache=True)
        self.forwards += 1
        self.runner.end(rows, True, mask.to(self.device))
        for r in rows:
            r.generator = r.sampling.generator(self.device)
            r.position = len(r.prompt_ids)
        done = self._emit(rows, out.logits[:, -1])
        keep = [i for i, r in enumerate(rows) if r not in done]
        if keep:
            cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
            self._join(cache, mask.to(self.device), keep, len(rows))
            self.rows += [rows[i] for i in keep]
        return done

    def _join(self, cache: Any, mask: torch.Tensor, keep: list[int], n: int) -> None:
        layers = _layers(cache)
        if len(keep) < n:
            sel = torch.tensor(keep, device=mask.device)
            for lay in layers:
                lay.keys, lay.values = lay.keys.index_select(0, sel), lay.values.index_select(0, sel)
            mask = mask.index_select(0, sel)
        mask = _trim(layers, mask)
        if self.cache is None or self.mask is None:
            self.cache, self.mask = cache, mask
            return
        old = _layers(self.cache)
        width = max(self.mask.shape[1], mask.shape[1])
        for mine, new in zip(old, layers, strict=True):
            mine.keys = torch.cat([_lpad(mine.keys, width), _lpad(new.keys, width)], 0)
            mine.values = torch.cat([_lpad(mine.values, width), _lpad(new.values, width)], 0)
        self.mask = torch.cat([_lpad_mask(self.mask, width), _lpad_mask(mask, width)], 0)

    # -- stepping -------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> list[Row]:
        """One decode forward over the running rows; returns the rows that finished (already removed).

        Rows cancelled since the last step leave first, without a forward of their own."""
        gone = [r for r in self.rows if r.finish_reason is not None]
        if gone:
            self._drop(gone)
        if not self.rows:
            return gone
        assert self.mask is not None
        b = len(self.rows)
        ids = torch.tensor([[r.next_token] for r in self.rows], dtype=torch.long, device=self.device)
        pos = torch.tensor([[r.position] for r in self.rows], dtype=torch.long, device=self.device)
        self.mask = torch.cat([self.mask, torch.ones((b, 1), dtype=torch.long, device=self.device)], 1)
        self.runner.begin(self.rows, False)
        out = self.runner.model(input_ids=ids, attention_mask=self.mask, position_ids=pos, cache=self.cache,
                                use_cache=True)
        self.forwards += 1
        self.runner.end(self.rows, False, torch.ones_like(ids))
        self.cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        for r in self.rows:
            r.position += 1
        done = self._emit(self.rows, out.logits[:, -1])
        if done:
            self._drop(done)
        return gone + done

    def _emit(self, rows: Sequence[Row], logits: torch.Tensor) -> list[Row]:
        """Sample each row's next token and hand it out; returns the rows that finished."""
        toks = sample_rows(logits, [r.sampling for r in rows], [r.generator for r in rows])
        done = []
        for r, t in zip(rows, toks, strict=True):
            if r.finish_reason is not None:  # cancelled while the forward ran
                done.append(r)
                continue
            if t in r.stop_ids:
                r.finish_reason = "stop"
            else:
                r.tokens.append(t)
                r.next_token = t
                if r.on_token is not None and r.on_token(t) is False:
                    r.finish_reason = r.finish_reason or "stop"
                elif len(r.tokens) >= r.max_new_tokens:
                    r.finish_reason = "length"
            if r.finish_reason is not None:
                done.append(r)
        return done

    def _drop(self, rows: Sequence[Row]) -> None:
        gone = set(map(id, rows))
        keep = [i for i, r in enumerate(self.rows) if id(r) not in gone]
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache, self.mask = None, None
            return
        assert self.mask is not None
        sel = torch.tensor(keep, device=self.device)
        layers = _layers(self.cache)
        for lay in layers:
            lay.keys, lay.values = lay.keys.index_select(0, sel), lay.values.index_select(0, sel)
        self.mask = _trim(layers, self.mask.index_select(0, sel))

    def cancel_all(self, reason: str = "cancelled") -> list[Row]:
        """End every running row (e.g. after a failed forward); returns them."""
        rows, self.rows, self.cache, self.mask = self.rows, [], None, None
        for r in rows:
            r.finish_reason = r.finish_reason or reason
        return rows


def supports(model: Any) -> bool:
    """Whether continuous batching can serve ``model``: every layer is full attention (no sliding-window or
    linear-attention layer, e.g. Gemma 3's or Mistral's sliding windows, whose caches this padded layout does
    not handle)."""
    cfg = _text_config(model)
    kinds = getattr(cfg, "layer_types", None)
    return not (getattr(cfg, "sliding_window", None) or (kinds and any(k != "full_attention" for k in kinds)))


def _text_config(model: Any) -> Any:
    return model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config


def _growing_cache(model: Any) -> Any:
    """An empty cache of :class:`GrowingLayer` for ``model`` (a plain ``DynamicCache`` for a model that
    :func:`supports` refuses; :func:`_layers` then raises)."""
    if not supports(model):
        return DynamicCache(config=_text_config(model))
    return Cache(layers=[GrowingLayer() for _ in range(_text_config(model).num_hidden_layers)])


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values are views of buffers with spare columns: appending writes in
    place. Replacing ``keys``/``values`` from outside (row selection, trimming, joining) is allowed: the next
    append sees they are no longer the start of the buffer and copies them into a new one."""

    _kbuf: torch.Tensor | None = None
    _vbuf: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.keys, self.values
        if not self.is_initialized or keys is None or values is None or keys.numel() == 0:
            self.lazy_initialization(key_states, value_states)
            keys, values, n = key_states[:, :, :0], value_states[:, :, :0], 0
            self._kbuf = self._vbuf = None
        else:
            n = keys.shape[-2]
        t = key_states.shape[-2]
        if not (_views_start(keys, self._kbuf, n + t) and _views_start(values, self._vbuf, n + t)):
            cap = n + t + max(32, (n + t) // 2)
            self._kbuf = _buffer(key_states, keys, n, cap)
            self._vbuf = _buffer(value_states, values, n, cap)
        assert self._kbuf is not None and self._vbuf is not None
        self._kbuf[:, :, n:n + t] = key_states
        self._vbuf[:, :, n:n + t] = value_states
        self.keys, self.values = self._kbuf[:, :, :n + t], self._vbuf[:, :, :n + t]
        return self.keys, self.values


def _views_start(t: torch.Tensor, buf: torch.Tensor | None, need: int) -> bool:
    """``t`` is ``buf[:, :, :len]`` and ``buf`` holds ``need`` columns."""
    return (buf is not None and t.data_ptr() == buf.data_ptr() and t.shape[:2] == buf.shape[:2]
            and t.stride() == buf.stride() and buf.shape[-2] >= need)


def _buffer(new: torch.Tensor, old: torch.Tensor, n: int, cap: int) -> torch.Tensor:
    buf = new.new_empty((new.shape[0], new.shape[1], cap, new.shape[-1]))
    if n:
        buf[:, :, :n] = old
    return buf


def _layers(cache: Any) -> list[Any]:
    layers = list(getattr(cache, "layers", []))
    if not layers or any(not hasattr(lay, "keys") or getattr(lay, "is_sliding", False) for lay in layers):
        raise InvalidInputError(f"continuous batching needs a full-attention DynamicCache, got {type(cache).__name__}")
    return layers


def _trim(layers: list[Any], mask: torch.Tensor) -> torch.Tensor:
    """Cut the leading columns that are padding in every row."""
    real = mask.any(0).nonzero()
    first = int(real[0]) if real.numel() else mask.shape[1]
    if first > 0:
        for lay in layers:
            lay.keys, lay.values = lay.keys[:, :, first:], lay.values[:, :, first:]
        mask = mask[:, first:]
    return mask


def _lpad(t: torch.Tensor, width: int) -> torch.Tensor:
    """Left-pad the sequence axis (-2) of a (B, H, L, D) cache tensor with zeros to ``width``."""
    extra = width - t.shape[-2]
    if extra <= 0:
        return t
    pad = torch.zeros((*t.shape[:-2], extra, t.shape[-1]), dtype=t.dtype, device=t.device)
    return torch.cat([pad, t], -2)


def _lpad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    extra = width - mask.shape[1]
    if extra <= 0:
        return mask
    return torch.cat([torch.zeros((mask.shape[0], extra), dtype=mask.dtype, device=mask.device), mask], 1)
