"""Mixed-adapter batching: every batch row uses its own adapter, mixture, or the base (BGMV in torch).

One base model serves many loaded adapters. Each linear keeps a slot bank of all loaded adapters
(padded to a common rank); a forward takes per-row weights over slots and computes, per row, the
gathered "virtual LoRA" of that row's adapters with two batched matmuls (``RoutedLoRALinear``'s
``fold`` backend, the idea of Punica's BGMV / S-LoRA) instead of looping over adapters.
A single adapter can also be merged into the weights (in fp32, with an unmerged copy kept to undo).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hub.core.adapter import LoraAdapter
from hub.core.compat import check_against_base
from hub.core.errors import IncompatibleAdaptersError, InvalidInputError, NotFoundError
from hub.core.peft_io import load_peft
from routing.bank import ExpertBank
from routing.context import GroupWeights, RoutingContext
from routing.layer import RoutedLoRALinear
from routing.model import RoutedModel, _set_module, base_shapes, model_id

BASE = "__base__"
#: a row: None / "__base__" (base model), an adapter name, or {name: weight} (explicit mixture)
RowSpec = str | Mapping[str, float] | None


@dataclass
class GenerationResult:
    """Per-row output of :meth:`MixedAdapterModel.generate` / :func:`generate_routed`.

    Attributes:
        tokens: new token ids per row (prompt excluded; cut after the first eos).
        adapters: per row, adapter name -> weight actually applied ({} = the base model).
        gate_weights: per row, site -> mean weight per expert over the row's tokens (token or
            sequence routers); None when no router answered.
        text: decoded new text per row, when a tokenizer was given.
    """

    tokens: list[list[int]]
    adapters: list[dict[str, float]]
    gate_weights: list[dict[str, list[float]]] | None = None
    text: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class MixedAdapterModel:
    """A base causal LM plus a slot bank of adapters; rows of one batch may use different adapters.

    Args:
        model: the HF causal LM; its linears (except ``lm_head``) are wrapped in place.
        tokenizer: optional HF tokenizer (left padding) for text prompts and decoded output.
        capacity: initial adapter slots (grows by doubling).
    """

    def __init__(self, model: nn.Module, tokenizer: Any = None, capacity: int = 8) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.context = RoutingContext()
        self.slots: dict[str, int] = {}
        self.adapters: dict[str, LoraAdapter] = {}
        self.capacity = max(1, capacity)
        self.merged: str | None = None
        self._shapes = base_shapes(model)
        self.layers: dict[str, RoutedLoRALinear] = {}
        for site, mod in list(model.named_modules()):
            if isinstance(mod, nn.Linear) and site != "lm_head" and not site.endswith(".lm_head"):
                bank = ExpertBank(self.capacity, 1, mod.in_features, mod.out_features,
                                  dtype=mod.weight.dtype, device=mod.weight.device)
                layer = RoutedLoRALinear(mod, bank, site=site, context=self.context, backend="fold")
                layer.enabled = False
                _set_module(model, site, layer)
                self.layers[site] = layer

    # -- adapters -------------------------------------------------------------------------------
    def load_adapter(self, name: str, adapter: LoraAdapter | str | os.PathLike[str]) -> int:
        """Load (or replace) adapter ``name`` from a LoraAdapter or a PEFT folder; returns its slot.

        Raises:
            InvalidAdapterError: an unreadable folder. IncompatibleAdaptersError: another base model
            or module shapes that do not fit.
        """
        if not name or name == BASE:
            raise InvalidInputError(f"adapter name must be non-empty and not {BASE!r}, got {name!r}")
        ad = adapter if isinstance(adapter, LoraAdapter) else load_peft(adapter)
        mid = model_id(self.model)
        if ad.base_model and mid != "unknown" and ad.base_model != mid:
            raise IncompatibleAdaptersError(f"adapter {name!r} is for base model {ad.base_model!r}, not {mid!r}")
        check_against_base(ad, self._shapes, mid)
        if self.merged is not None:
            self.unmerge()
        if name in self.slots:
            self.unload_adapter(name)
        free = sorted(set(range(self.capacity)) - set(self.slots.values()))
        if not free:
            self._grow(self.capacity * 2)
            free = sorted(set(range(self.capacity)) - set(self.slots.values()))
        slot = free[0]
        dev = next(iter(self.layers.values())).bank.a.device
        for site, la in ad.layers.items():
            self.layers[site].bank.set_expert(slot, la.to(device=dev), site=site)
        self.slots[name], self.adapters[name] = slot, ad
        return slot

    def unload_adapter(self, name: str) -> None:
        """Free ``name``'s slot (its weights are zeroed)."""
        slot = self._slot(name)
        if self.merged == name:
            self.unmerge()
        for site in self.adapters[name].layers:
            self.layers[site].bank.set_expert(slot, None)
        del self.slots[name], self.adapters[name]

    def _grow(self, n: int) -> None:
        for lay in self.layers.values():
            lay.bank.resize(n, lay.bank.rank)
        self.capacity = n

    def _slot(self, name: str) -> int:
        if name not in self.slots:
            raise NotFoundError(f"adapter {name!r} is not loaded; loaded: {sorted(self.slots)}", name=name)
        return self.slots[name]

    # -- merging --------------------------------------------------------------------------------
    def merge(self, name: str) -> None:
        """Merge adapter ``name`` into the base weights (fp32); rows for it then cost nothing extra."""
        slot = self._slot(name)
        self.unmerge()
        for site in self.adapters[name].layers:
            lay = self.layers[site]
            w = torch.zeros(lay.bank.n_experts, device=lay.bank.scale.device)
            w[slot] = 1.0
            lay.merge(w)
        self.merged = name

    def unmerge(self) -> None:
        """Restore the exact base weights."""
        for lay in self.layers.values():
            lay.unmerge()
        self.merged = None

    # -- forward --------------------------------------------------------------------------------
    def _normalise(self, spec: RowSpec) -> dict[str, float]:
        if spec is None or spec == BASE:
            return {}
        if isinstance(spec, str):
            self._slot(spec)
            return {spec: 1.0}
        if isinstance(spec, Mapping):
            out = {}
            for k, v in spec.items():
                self._slot(k)
                if not isinstance(v, int | float) or isinstance(v, bool) or v != v or abs(v) == float("inf"):
                    raise InvalidInputError(f"mixture weight of {k!r} must be a finite number, got {v!r}")
                out[k] = float(v)
            return {k: v for k, v in out.items() if v != 0.0}
        raise InvalidInputError(f"row adapter must be None, a name or a {{name: weight}} mixture, got {spec!r}")

    def set_rows(self, rows: Sequence[RowSpec], like: GroupWeights | None = None) -> list[dict[str, float]]:
        """Set per-row adapters for the following forwards; returns the normalised mixtures.

        ``like``: the weights of an earlier call to compare with (default: the ones set last). The same rows
        reuse that object (layers keep what they gathered for it); rows that differ only in some positions
        make weights that name ``like`` and those positions (``GroupWeights.prev``/``changed``), so a layer
        updates just those rows (a continuous batch keeps its decode weights as ``like`` across the prefills
        of joining rows).
        """
        mixes = [self._normalise(r) for r in rows]
        if self.merged is not None and any(m != {self.merged: 1.0} for m in mixes):
            self.unmerge()
        used = {n for m in mixes for n in m}
        if self.merged is not None:  # every row uses the merged adapter: nothing to add
            used = set()
        active = {site for n in used for site in self.adapters[n].layers}
        for site, lay in self.layers.items():
            if lay.enabled != (site in active):
                lay.enabled = site in active
        rows_key = tuple(tuple(m.items()) for m in mixes)
        key = (rows_key, tuple(sorted(self.slots.items())))
        prev = like if like is not None else self.context.rows.get("*")
        if prev is not None and prev.key == key:  # same rows: keep the object (gather cache)
            self.context.rows["*"] = prev
            return mixes
        k = max([len(m) for m in mixes] + [1])
        pad = [(0, 0.0)] * k
        pairs = [([(self.slots[n], w) for n, w in m.items()] + pad)[:k] for m in mixes]
        idx = torch.tensor([[i for i, _ in p] for p in pairs], dtype=torch.long).view(len(mixes), k)
        val = torch.tensor([[w for _, w in p] for p in pairs], dtype=torch.float32).view(len(mixes), k)
        dev = next(iter(self.layers.values())).bank.a.device
        single = None
        if all(len(m) == 1 for m in mixes) and len({(n, w) for m in mixes for n, w in m.items()}) == 1:
            name, weight = next(iter(mixes[0].items()))
            single = (self.slots[name], weight)
        unit = all(w == 1.0 for m in mixes for w in m.values()) and all(len(m) == 1 for m in mixes)
        w = GroupWeights(idx.to(dev), val.to(dev), level="row", single=single, unit=unit, key=key)
        if prev is not None and isinstance(prev.key, tuple) and prev.key[1] == key[1] and prev.idx.shape == w.idx.shape:
            changed = [i for i, (a, b) in enumerate(zip(prev.key[0], rows_key, strict=True)) if a != b]
            if len(changed) < len(mixes):  # the layers may update the changed rows of what they gathered
                prev.prev = None  # keep one link, not the history
                w.prev, w.changed = prev, torch.tensor(changed, dtype=torch.long, device=dev)
                if k == 1 and all(list(mixes[i].values()) == [1.0] for i in changed):
                    w.moves = tuple((i, pairs[i][0][0]) for i in changed)
        self.context.rows["*"] = w
        return mixes

    def forward(self, input_ids: torch.Tensor, adapters: Sequence[RowSpec], **kwargs: Any) -> Any:
        """One forward where row i uses ``adapters[i]``."""
        if len(adapters) != input_ids.shape[0]:
            raise InvalidInputError(f"need one adapter spec per row ({input_ids.shape[0]}), got {len(adapters)}")
        self.set_rows(adapters)
        return self.model(input_ids=input_ids, **kwargs)

    __call__ = forward

    def _encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tokenizer is None:
            raise InvalidInputError("text prompts need a tokenizer; pass input_ids instead")
        self.tokenizer.padding_side = "left"
        enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True)
        return enc["input_ids"], enc["attention_mask"]

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor | None = None, *, adapters: Sequence[RowSpec],
                 prompts: Sequence[str] | None = None, attention_mask: torch.Tensor | None = None,
                 max_new_tokens: int = 32, greedy: bool = True, eos_token_id: int | None = None,
                 ignore_eos: bool = False, **gen_kwargs: Any) -> GenerationResult:
        """Generate for a batch where row i uses ``adapters[i]`` (left-padded prompts); ``ignore_eos``: every row
        runs ``max_new_tokens`` steps, an eos token is kept in its tokens like any other.

        Raises:
            NotFoundError: an adapter that is not loaded. InvalidInputError: bad specs or lengths.
        """
        if prompts is not None:
            input_ids, attention_mask = self._encode(prompts)
        if input_ids is None:
            raise InvalidInputError("give input_ids or prompts")
        if max_new_tokens < 1:
            raise InvalidInputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if len(adapters) != input_ids.shape[0]:
            raise InvalidInputError(f"need one adapter spec per row ({input_ids.shape[0]}), got {len(adapters)}")
        mixes = self.set_rows(adapters)
        return _generate(self.model, self.tokenizer, input_ids, attention_mask, max_new_tokens, greedy,
                         eos_token_id, mixes, None, gen_kwargs, ignore_eos)

    def remove(self) -> nn.Module:
        """Unmerge and put the original linears back; returns the base model."""
        self.unmerge()
        for site, lay in self.layers.items():
            _set_module(self.model, site, lay.base)
        self.layers.clear()
        return self.model


def _generate(model: nn.Module, tokenizer: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
              max_new_tokens: int, greedy: bool, eos_token_id: int | None, mixes: list[dict[str, float]],
              gates: Callable[[], list[dict[str, list[float]]]] | None, gen_kwargs: dict[str, Any],
              ignore_eos: bool = False) -> GenerationResult:
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    cfg = getattr(model, "generation_config", None)
    # eos_token_id=None overrides the model's generation config: no row stops before max_new_tokens
    eos = None if ignore_eos else eos_token_id if eos_token_id is not None else getattr(cfg, "eos_token_id", None)
    pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    gen: Any = model.generate
    out = gen(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                         do_sample=not greedy, eos_token_id=eos, pad_token_id=pad if pad is not None else 0,
                         **gen_kwargs)
    new = out[:, input_ids.shape[1]:].tolist()
    eos_ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    tokens = []
    for row in new:
        cut = next((i + 1 for i, t in enumerate(row) if t in eos_ids), len(row))
        tokens.append(row[:cut])
    text = tokenizer.batch_decode(tokens, skip_special_tokens=True) if tokenizer is not None else None
    return GenerationResult(tokens=tokens, adapters=mixes, gate_weights=gates() if gates else None, text=text)


@torch.no_grad()
def generate_routed(routed: RoutedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                    max_new_tokens: int = 32, greedy: bool = True, eos_token_id: int | None = None,
                    tokenizer: Any = None, ignore_eos: bool = False, **gen_kwargs: Any) -> GenerationResult:
    """Generate with a router preset; reports per-row, per-site mean gate weights over the experts."""
    ctx = routed.context
    ctx.collect, rows = True, input_ids.shape[0]
    ctx.clear_records()
    try:
        def gates() -> list[dict[str, list[float]]]:
            out: list[dict[str, list[float]]] = [{} for _ in range(rows)]
            for site, recs in ctx.records.items():
                g = (recs[0].logits.shape[1] if recs[0].logits is not None else
                     int(max(int(r.weights.idx.max()) for r in recs)) + 1)
                tot = torch.zeros(rows, g)
                for r in recs:
                    w = r.weights.dense(g).detach().float().cpu()  # (M, G)
                    tot += w.reshape(rows, -1, g).mean(1) if r.weights.level == "token" else w
                for i in range(rows):
                    out[i][site] = (tot[i] / len(recs)).tolist()
            return out

        res = _generate(routed.model, tokenizer, input_ids, attention_mask, max_new_tokens, greedy, eos_token_id,
                        [], gates, gen_kwargs, ignore_eos)
        request = ctx.rows.get("*") if routed.router is not None else None  # a request-level router answered
        res.adapters = [routed_adapters(routed, None if request is None else (request.idx[r], request.val[r]),
                                        res.gate_weights[r] if res.gate_weights else None) for r in range(rows)]
        return res
    finally:
        ctx.collect = False
        ctx.clear_records()


def routed_adapters(routed: RoutedModel, request: tuple[torch.Tensor, torch.Tensor] | None,
                    gate_weights: Mapping[str, list[float]] | None) -> dict[str, float]:
    """The adapters one routed row used: the request-level router's choice (``request``: the row's (k,) expert
    indices and weights), else the mean expert weights of its gates, else (no gate answered) every expert."""
    names = routed.expert_names
    if request is not None:
        return {names[int(i)]: float(v) for i, v in zip(*request, strict=True) if v != 0}
    if gate_weights is None:
        return {n: 1.0 for n in names}
    return _mean_expert_weights(gate_weights, len(names), names)


def _mean_expert_weights(gw: Mapping[str, list[float]], n: int, names: Sequence[str]) -> dict[str, float]:
    vals = [v for v in gw.values() if len(v) == n]
    if not vals:
        return {}
    mean = torch.tensor(vals).mean(0)
    return {names[i]: float(mean[i]) for i in range(n) if float(mean[i]) != 0.0}
