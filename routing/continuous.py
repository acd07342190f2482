"""Iteration-level (continuous) batching over a padded per-row KV cache, with per-row adapters and sampling.

:class:`ContinuousBatch` holds the rows being generated on one
:class:`~routing.batching.MixedAdapterModel`. Each :meth:`~ContinuousBatch.step` is ONE decode forward over
every running row, then each row samples its own next token (:mod:`routing.sampling`) and a finished row
leaves at once (it becomes a hole, below). New rows join between steps with :meth:`~ContinuousBatch.add`:
their prompts are prefilled together in forwards of their own (the running rows are not recomputed), their
first token is sampled from that prefill, and their cache is written into holes or appended to the running
one. Every row
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
The cost is that a join that finds no hole copies the running cache once (``torch.cat``); a join into a hole
writes its rows in place. A decode step does not copy it: each layer's keys and values are views
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

import inspect
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
        self._step: Any = None  # the weights of the last decode step (a prefill in between sets others)

    def begin(self, rows: Sequence[Row], prefill: bool) -> None:
        # a hole (a row that left) keeps its adapters while they are loaded (its weights need no update), else
        # it runs on the bare base (an adapter may be evicted from the slot bank while its row is a hole)
        slots = self.mixed.slots
        specs = [r.mixture or None if r.finish_reason is None or all(k in slots for k in r.mixture) else None
                 for r in rows]
        if prefill:
            self.mixed.set_rows(specs)
        else:
            self.mixed.set_rows(specs, like=self._step)
            self._step = self.mixed.context.rows.get("*")

    def end(self, rows: Sequence[Row], prefill: bool, tokens: torch.Tensor) -> None:
        return None

    def report(self, row: Row) -> tuple[dict[str, float], dict[str, list[float]] | None]:
        return dict(row.mixture), None


class ContinuousBatch:
    """The running rows of one model and their padded KV cache.

    A row that leaves (finished or cancelled) becomes a **hole**: its batch position stays, its mask row is
    cleared and it rides along in the following forwards (fed the pad token, never sampled) until a joining
    row takes its place, which writes the newcomer's prompt cache into that position in place and changes one
    row of the gathered LoRA weights (:meth:`routing.batching.MixedAdapterModel.set_rows` hands the changed
    rows to the layers). Without holes every leave would copy the whole KV cache (an index select) and every
    row's gathered adapter weights, and the next join would copy them again. Holes are compacted away (one
    index select) at the start of a step that finds a quarter or more of the batch empty (``compact_at``), so
    a batch below saturation does not keep computing rows nobody waits for.

    Args:
        mixed: the :class:`~routing.batching.MixedAdapterModel` (its adapters already loaded), or any
            :class:`RowModel` (e.g. :class:`routing.routed_batch.RoutedRows`).
        pad_id: the token id written in padded columns (never attended to).
    """

    def __init__(self, mixed: Any, pad_id: int) -> None:
        self.mixed, self.pad_id = mixed, pad_id
        self.runner: RowModel = mixed if isinstance(mixed, RowModel) else MixedRows(mixed)
        self.device = next(self.runner.model.parameters()).device
        # a prefill needs the logits of its last position only (a 49k vocabulary's head over every prompt
        # token is a fifth of a SmolLM2 prefill); models whose forward takes ``logits_to_keep`` skip the rest
        takes = "logits_to_keep" in inspect.signature(self.runner.model.forward).parameters
        self._last_logits: dict[str, Any] = {"logits_to_keep": 1} if takes else {}
        self.slots: list[Row] = []  # batch order, holes included
        self.holes: list[int] = []  # sorted positions in ``slots`` that hold a row that left
        self.cache: Any = None
        self.mask: torch.Tensor | None = None  # (B, L) long, 1 = a real cached token
        self.forwards = 0  # prefill and decode forwards run
        self.compactions = 0  # index selects that dropped holes
        self.compact_at = 0.25  # the fraction of holes that makes the next step compact (0: at once)
        # most padding tokens a joiner may add to a shared prefill (None: one prefill for all joiners, on CUDA)
        self.prefill_pad: int | None = None if self.device.type == "cuda" else 16
        # input tokens the forwards processed (padding and holes included) and those live rows needed
        self.tokens_computed = 0
        self.tokens_useful = 0

    @property
    def rows(self) -> list[Row]:
        """The live rows, in batch order."""
        if not self.holes:
            return list(self.slots)
        holes = set(self.holes)
        return [r for i, r in enumerate(self.slots) if i not in holes]

    def __len__(self) -> int:
        return len(self.slots) - len(self.holes)

    # -- joining --------------------------------------------------------------------------------
    @torch.no_grad()
    def add(self, rows: Sequence[Row]) -> list[Row]:
        """Prefill ``rows``, sample their first tokens, join them (into holes first); returns the ones that
        already finished (they never enter the running batch).

        Rows of similar prompt lengths share a prefill forward; on the CPU a row whose prompt is more than
        ``prefill_pad`` tokens shorter than the longest of a group starts a group of its own (a forward's cost
        there grows with its padded tokens, and a forward's fixed cost is a few tokens' worth)."""
        rows = sorted((r for r in rows if r.finish_reason is None), key=lambda r: -len(r.prompt_ids))
        groups: list[list[Row]] = []
        for r in rows:
            if groups and (self.prefill_pad is None or
                           len(groups[-1][0].prompt_ids) - len(r.prompt_ids) <= self.prefill_pad):
                groups[-1].append(r)
            else:
                groups.append([r])
        return [r for g in groups for r in self._prefill(g)]

    def _prefill(self, rows: list[Row]) -> list[Row]:
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
                                use_cache=True, **self._last_logits)
        self.forwards += 1
        self.tokens_computed += ids.numel()
        self.tokens_useful += sum(len(r.prompt_ids) for r in rows)
        self.runner.end(rows, True, mask.to(self.device))
        for r in rows:
            r.generator = r.sampling.generator(self.device)
            r.position = len(r.prompt_ids)
        done = self._emit(rows, out.logits[:, -1])
        keep = [i for i, r in enumerate(rows) if r not in done]
        if keep:
            cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
            self._join(cache, mask.to(self.device), keep, [rows[i] for i in keep], len(rows))
        return done

    def _join(self, cache: Any, mask: torch.Tensor, keep: list[int], new: list[Row], n: int) -> None:
        layers = _layers(cache)
        if len(keep) < n:
            sel = torch.tensor(keep, device=mask.device)
            for lay in layers:
                lay.keys, lay.values = lay.keys.index_select(0, sel), lay.values.index_select(0, sel)
            mask = mask.index_select(0, sel)
        mask = _trim(layers, mask)
        if self.cache is None or self.mask is None:
            self.cache, self.mask, self.slots, self.holes = cache, mask, new, []
            return
        old = _layers(self.cache)
        fill = min(len(self.holes), len(new))
        if fill:  # newcomers take holes: their prompt cache is written into those rows in place
            width = mask.shape[1]
            if width > self.mask.shape[1]:
                for mine in old:
                    mine.keys, mine.values = _lpad(mine.keys, width), _lpad(mine.values, width)
                self.mask = _lpad_mask(self.mask, width)
            at, self.holes = self.holes[:fill], self.holes[fill:]
            sel = torch.tensor(at, device=mask.device)
            cols = slice(self.mask.shape[1] - width, None)
            for mine, lay in zip(old, layers, strict=True):
                mine.keys[sel, :, cols] = lay.keys[:fill]
                mine.values[sel, :, cols] = lay.values[:fill]
            self.mask[sel] = 0
            self.mask[sel, cols] = mask[:fill]
            for i, r in zip(at, new, strict=False):
                self.slots[i] = r
        if fill == len(new):
            return
        width = max(self.mask.shape[1], mask.shape[1])
        for mine, lay in zip(old, layers, strict=True):
            mine.keys = torch.cat([_lpad(mine.keys, width), _lpad(lay.keys[fill:], width)], 0)
            mine.values = torch.cat([_lpad(mine.values, width), _lpad(lay.values[fill:], width)], 0)
        self.mask = torch.cat([_lpad_mask(self.mask, width), _lpad_mask(mask[fill:], width)], 0)
        self.slots += new[fill:]

    # -- stepping -------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> list[Row]:
        """One decode forward over the running rows; returns the rows that finished (now holes or gone).

        Rows cancelled since the last step leave first, without a forward of their own."""
        holes = set(self.holes)
        gone = [r for i, r in enumerate(self.slots) if i not in holes and r.finish_reason is not None]
        if gone:
            self._leave(gone)
        if self.holes and len(self.holes) >= self.compact_at * len(self.slots):
            self._compact()
        if not self.slots:
            return gone
        assert self.mask is not None
        b, holes = len(self.slots), set(self.holes)
        live = [i for i in range(b) if i not in holes]
        ids = torch.tensor([[self.pad_id if i in holes else r.next_token] for i, r in enumerate(self.slots)],
                           dtype=torch.long, device=self.device)
        pos = torch.tensor([[r.position] for r in self.slots], dtype=torch.long, device=self.device)
        self.mask = torch.cat([self.mask, torch.ones((b, 1), dtype=torch.long, device=self.device)], 1)
        self.runner.begin(self.slots, False)
        out = self.runner.model(input_ids=ids, attention_mask=self.mask, position_ids=pos, cache=self.cache,
                                use_cache=True)
        self.forwards += 1
        self.tokens_computed += b
        self.tokens_useful += len(live)
        real = torch.ones_like(ids)
        if holes:
            real[sorted(holes)] = 0
        self.runner.end(self.slots, False, real)
        self.cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        logits = out.logits[:, -1]
        if holes:
            logits = logits[torch.tensor(live, device=logits.device)]
        rows = [self.slots[i] for i in live]
        for r in rows:
            r.position += 1
        done = self._emit(rows, logits)
        if done:
            self._leave(done)
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

    def _leave(self, rows: Sequence[Row]) -> None:
        """Turn ``rows`` into holes (their mask rows cleared); the batch is emptied when no live row is left."""
        gone = set(map(id, rows))
        at = [i for i, r in enumerate(self.slots) if id(r) in gone]
        self.holes = sorted(set(self.holes) | set(at))
        if len(self.holes) == len(self.slots):
            self.slots, self.holes, self.cache, self.mask = [], [], None, None
            return
        assert self.mask is not None
        self.mask[torch.tensor(at, device=self.mask.device)] = 0

    def _compact(self) -> None:
        """Drop the holes: one index select of the cache, then cut columns that only padding uses."""
        if not self.holes:
            return
        holes = set(self.holes)
        keep = [i for i in range(len(self.slots)) if i not in holes]
        self.slots, self.holes = [self.slots[i] for i in keep], []
        self.compactions += 1
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
        rows = self.rows
        self.slots, self.holes, self.cache, self.mask = [], [], None, None
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
