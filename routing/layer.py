"""``RoutedLoRALinear``: a frozen linear plus a gated bank of LoRA experts (spec §7.1, §7.4).

Reference semantics (every backend must equal it)::

    y = W0 x + b0 + B (w ⊙ A δ(x)),   w_j = ω_{γ(j)} s_j

with ``A`` (R, in), ``B`` (out, R) the bank in rank space, ``γ`` the group map (rank j belongs to
group j // group_size) and ``ω`` sparse group weights from a gate, a shared gate, or per-row weights
held by the :class:`~routing.context.RoutingContext`.

Backends:
    dense    all R ranks, masked with ``where`` (the reference; token or row weights).
    gather   per (token, slot) gather of the selected groups' rows of A and B, two bmm's
             (MeteoRA's gather-bmm at adapter granularity, SMoRA's indexed-rank at rank granularity).
    grouped  group (token, slot) pairs by group, one GEMM pair per group, ``index_add`` back.
    fold     row weights: per row, one "virtual LoRA" of the selected groups (scale folded into A),
             two bmm's over the batch (the BGMV idea of Punica / S-LoRA).
"""

from __future__ import annotations

from typing import Literal, TypeGuard

import torch
import torch.nn.functional as F
from torch import nn

from hub.core.errors import InvalidInputError
from routing.bank import ExpertBank
from routing.context import GroupWeights, RoutingContext
from routing.gates import features_for

Backend = Literal["auto", "dense", "gather", "grouped", "fold"]
BACKENDS = ("auto", "dense", "gather", "grouped", "fold")


def is_backend(name: str) -> TypeGuard[Backend]:
    """Whether ``name`` is one of :data:`BACKENDS` (configs hold the backend as a validated ``str``)."""
    return name in BACKENDS


class RoutedLoRALinear(nn.Module):
    """Wraps an ``nn.Linear``; adds ``B (w ⊙ A x)`` for weights from a gate or the context.

    Args:
        base: the frozen linear (kept as ``self.base``; removal puts it back).
        bank: the experts of this site.
        site: module path in the base model (``model.layers.0.self_attn.q_proj``).
        context: the routing context shared by the model's routed modules.
        group_size: ranks per group; None means one group per expert (``bank.rank``).
        gate: a gate module reading this site's input (per-site token routing), or None.
        gate_key: key of shared token weights in ``context.shared`` (e.g. one gate per MLP block).
        row_key: key of row weights in the context (sequence/request level, mixed batching).
        backend: see the module docstring.
        dropout: LoRA-branch input dropout (identity in eval mode).
    """

    def __init__(self, base: nn.Linear, bank: ExpertBank, *, site: str, context: RoutingContext,
                 group_size: int | None = None, gate: nn.Module | None = None, gate_key: str | None = None,
                 row_key: str | None = None, backend: str = "auto", dropout: float = 0.0) -> None:
        super().__init__()
        if not is_backend(backend):
            raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.base = base
        self.bank = bank
        self.site = site
        self.context = context
        self.group_size = group_size
        self.gate = gate
        self.gate_key = gate_key
        self.row_key = row_key
        self.backend: Backend = backend
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self._merged_copy: torch.Tensor | None = None
        self.enabled = True  # False: skip the LoRA term (no selected expert adapts this site)
        self._folded: tuple[GroupWeights, int, torch.Tensor, torch.Tensor] | None = None
        self._bank_t: tuple[int, torch.Tensor] | None = None  # (bank version, (E, in, r) scaled A^T)

    # -- shapes ---------------------------------------------------------------------------------
    @property
    def in_features(self) -> int:
        return int(self.base.in_features)

    @property
    def out_features(self) -> int:
        return int(self.base.out_features)

    @property
    def block(self) -> int:
        """Ranks per group (``b``)."""
        return self.group_size or self.bank.rank

    @property
    def n_groups(self) -> int:
        return self.bank.total_rank // self.block

    def rank_scale(self) -> torch.Tensor:
        """(R,) per-rank scale ``s_j = s_{o(j)}``."""
        return self.bank.scale.repeat_interleave(self.bank.rank)

    # -- forward --------------------------------------------------------------------------------
    def current_weights(self, x: torch.Tensor) -> GroupWeights | None:
        """The group weights that apply to input ``x`` in this forward, or None (base only)."""
        if self.gate is not None:
            rec = self.gate(features_for(self.gate, self.context, x))  # (M, in|D) -> record over (M, G)
            self.context.record(self.site, rec)
            return rec.weights
        if self.gate_key is not None and self.gate_key in self.context.shared:
            return self.context.shared[self.gate_key]
        return self.context.row_weights(self.row_key)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if not self.enabled:
            return y
        w = self.current_weights(x)
        if w is None:
            return y
        f = self._folded
        if f is not None and f[0] is w and x.shape[1] == 1 and f[1] == self.bank.version and \
                not torch.is_grad_enabled():
            # the decode step of a batch whose weights were folded at an earlier step (checked there): the
            # same two bmm's as below, without the per-call checks (a decode step calls every site once)
            return y.baddbmm_(torch.bmm(x.to(f[2].dtype), f[2]).to(y.dtype), f[3].to(y.dtype))
        if not torch.is_grad_enabled() and isinstance(self.drop, nn.Identity) and self.backend in ("auto", "fold"):
            if w.single is not None:  # one expert for the whole batch: two GEMMs, scale fused in addmm
                slot, weight = w.single
                s = weight * self.bank.scales[slot]
                if s == 0.0 or self.bank.ranks[slot] == 0:
                    return y
                r = self.bank.ranks[slot]
                h = F.linear(x.to(self.bank.a.dtype), self.bank.a[slot, :r])  # (..., r)
                y2 = y.reshape(-1, self.out_features)
                return y2.addmm_(h.reshape(-1, r).to(y.dtype), self.bank.bt[slot, :r].to(y.dtype),
                                 alpha=s).view_as(y)
            if w.level == "row" and w.idx.shape[0] == y.shape[0] and y.dim() == 3 and \
                    self.group_size in (None, self.bank.rank):
                a_t, bt_sel = self._folded_rows(w) if x.shape[1] == 1 else self._gather_folded(w)
                h = torch.bmm(x.to(a_t.dtype), a_t)  # (B, T, in) @ (B, in, k*r), weights folded in
                return y.baddbmm_(h.to(y.dtype), bt_sel.to(y.dtype))  # y += h @ B_sel, per row
        return y + self.lora(self.drop(x), w, self.backend).to(y.dtype)

    def lora(self, x: torch.Tensor, w: GroupWeights, backend: Backend = "auto") -> torch.Tensor:
        """The routed LoRA term for ``x`` (..., in) under weights ``w``; shape (..., out)."""
        lead = x.shape[:-1]
        x = x.to(self.bank.a.dtype)
        if w.level == "token":
            x2 = x.reshape(-1, self.in_features)  # (M, in)
            if w.idx.shape[0] != x2.shape[0]:
                raise InvalidInputError(f"{self.site}: {w.idx.shape[0]} token weights for {x2.shape[0]} tokens")
            if backend == "auto":
                backend = "dense" if self.bank.total_rank <= 512 or w.idx.shape[1] * self.block * 2 >= \
                    self.bank.total_rank else "grouped"
            fn = {"dense": self._dense, "gather": self._gather, "grouped": self._grouped}.get(backend)
            if fn is None:
                raise InvalidInputError(f"backend {backend!r} needs row weights; token weights were given")
            return fn(x2, w).reshape(*lead, self.out_features)
        rows = w.idx.shape[0]
        x3 = x.reshape(rows, -1, self.in_features)  # (B, T, in)
        if backend in ("auto", "fold"):
            out = self._fold(x3, w)
        elif backend == "dense":
            out = self._dense(x3, w)
        else:
            raise InvalidInputError(f"backend {backend!r} needs token weights; row weights were given")
        return out.reshape(*lead, self.out_features)

    def _rank_weights(self, w: GroupWeights) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, R) per-rank weights ``ω_γ(j) s_j`` and the (M, R) selection mask."""
        g, b = self.n_groups, self.block
        wr = w.dense(g).repeat_interleave(b, dim=1) * self.rank_scale()  # (M, R)
        return wr.to(self.bank.a.dtype), w.mask(g).repeat_interleave(b, dim=1)

    def _dense(self, x: torch.Tensor, w: GroupWeights) -> torch.Tensor:
        a, bt = self.bank.flat()  # (R, in), (R, out)
        g, b = self.n_groups, self.block
        h = x @ a.t()  # (M, R) or (B, T, R)
        hv = h.view(*h.shape[:-1], g, b)  # (..., G, b)
        wg, sel = w.dense(g).to(h.dtype), w.mask(g)  # (M, G)
        if x.dim() == 3:
            wg, sel = wg[:, None], sel[:, None]
        scale = self.rank_scale().to(h.dtype).view(g, b)
        hv = torch.where(sel[..., None], hv * wg[..., None], torch.zeros((), dtype=h.dtype, device=h.device))
        return (hv * scale).reshape(h.shape) @ bt  # (..., out)

    def _rank_index(self, w: GroupWeights) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, k*b) rank indices of the selected groups and their weights (scale included)."""
        b = self.block
        offs = torch.arange(b, device=w.idx.device)
        ridx = (w.idx[..., None] * b + offs).reshape(w.idx.shape[0], -1)  # (M, k*b)
        vr = w.val.repeat_interleave(b, dim=1) * self.rank_scale()[ridx]  # (M, k*b)
        return ridx, vr.to(self.bank.a.dtype)

    def _gather(self, x2: torch.Tensor, w: GroupWeights) -> torch.Tensor:
        a, bt = self.bank.flat()
        ridx, vr = self._rank_index(w)
        h = torch.bmm(a[ridx], x2[:, :, None]).squeeze(-1) * vr  # (M, kb, in) @ (M, in, 1) -> (M, kb)
        return torch.bmm(h[:, None, :], bt[ridx]).squeeze(1)  # (M, 1, kb) @ (M, kb, out) -> (M, out)

    def _grouped(self, x2: torch.Tensor, w: GroupWeights) -> torch.Tensor:
        a, bt = self.bank.flat()
        b, scale = self.block, self.rank_scale().to(x2.dtype)
        k = w.idx.shape[1]
        flat_g = w.idx.reshape(-1)  # (M*k,)
        order = torch.argsort(flat_g, stable=True)  # (token, slot) pairs sorted by group
        counts = torch.bincount(flat_g, minlength=self.n_groups).tolist()
        tok = order // k
        xs = x2.index_select(0, tok)  # (M*k, in), contiguous per group
        vs = w.val.reshape(-1).index_select(0, order).to(x2.dtype)  # (M*k,)
        outs, start = [], 0
        for g, c in enumerate(counts):
            if c == 0:
                continue
            sl, part = slice(g * b, (g + 1) * b), slice(start, start + c)
            h = (xs[part] @ a[sl].t()) * (scale[sl] * vs[part, None])  # (c, b)
            outs.append(h @ bt[sl])  # (c, out)
            start += c
        ys = torch.cat(outs) if outs else x2.new_zeros(0, self.out_features)
        return x2.new_zeros(x2.shape[0], self.out_features).index_add(0, tok, ys)

    #: gathered per-row weights are cached (inference only) when they hold at most this many elements
    CACHE_ELEMENTS = 1 << 24

    def _gather_rows(self, w: GroupWeights) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per row, the gathered experts: ``A_sel`` (B, k*r, in), ``B_sel`` (B, k*r, out) and the
        per-rank coefficient ``w_i s_i`` (B, k*r). Experts are gathered whole (index on the slot axis)."""
        rows, k = w.idx.shape
        r = self.bank.rank
        flat = w.idx.reshape(-1)  # (B*k,)
        a_sel = self.bank.a.index_select(0, flat).view(rows, k * r, self.in_features)  # (B, k*r, in)
        bt_sel = self.bank.bt.index_select(0, flat).view(rows, k * r, self.out_features)  # (B, k*r, out)
        coef = w.val * self.bank.scale.index_select(0, flat).view(rows, k)  # (B, k)
        return a_sel, bt_sel, coef.to(a_sel.dtype).repeat_interleave(r, dim=1)  # (B, k*r)

    def _folded_rows(self, w: GroupWeights) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: ``(A_sel * w s)^T`` (B, in, k*r) and ``B_sel`` (B, k*r, out), cached per weights
        object and bank version (decoding steps of one batch gather once). Weights that name the cached ones
        as ``prev`` (a continuous batch's join into a hole) gather only their ``changed`` rows, written into
        the cached tensors in place. A gather selects from a copy of the bank kept as ``(s A)^T`` per expert
        (rebuilt when the bank changes), so it is two index selects, not a select, a scale and a transpose.
        Decode steps only (one token per row): a prefill gathers without touching the cache."""
        f = self._folded
        if f is not None and f[1] == self.bank.version:
            if f[0] is w:
                return f[2], f[3]
            if w.prev is not None and f[0] is w.prev and w.changed is not None:
                if w.moves is not None and self.bank.rank == f[2].shape[2]:  # one adapter per changed row
                    a_t = self._scaled_a_t()
                    for row, slot in w.moves:
                        f[2][row].copy_(a_t[slot])
                        f[3][row].copy_(self.bank.bt[slot])
                elif w.changed.numel():  # only some rows changed: gather those into the cached copies
                    a_new, bt_new = self._gather_folded(w.delta)
                    f[2].index_copy_(0, w.changed, a_new)
                    f[3].index_copy_(0, w.changed, bt_new)
                self.__dict__["_folded"] = (w, f[1], f[2], f[3])  # plain attribute: skip Module.__setattr__
                return f[2], f[3]
        a_t, bt_sel = self._gather_folded(w)
        rows, k = w.idx.shape
        small = rows * k * self.bank.rank * (self.in_features + self.out_features) <= self.CACHE_ELEMENTS
        self.__dict__["_folded"] = (w, self.bank.version, a_t, bt_sel) if small else None
        return a_t, bt_sel

    def _gather_folded(self, w: GroupWeights) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A_sel * w s)^T`` (B, in, k*r) and ``B_sel`` (B, k*r, out) of the rows of ``w``."""
        rows, k = w.idx.shape
        r = self.bank.rank
        flat = w.idx.reshape(-1)  # (B*k,)
        a_t = self._scaled_a_t().index_select(0, flat)  # (B*k, in, r)
        if k == 1:
            if not w.unit:
                a_t = a_t * w.val.to(a_t.dtype)[:, :, None]
        else:  # (B, k, in, r) * w -> (B, in, k*r)
            a_t = (a_t.view(rows, k, self.in_features, r) * w.val.to(a_t.dtype)[:, :, None, None])
            a_t = a_t.permute(0, 2, 1, 3).reshape(rows, self.in_features, k * r)
        return a_t, self.bank.bt.index_select(0, flat).view(rows, k * r, self.out_features)  # (B, k*r, out)

    def _scaled_a_t(self) -> torch.Tensor:
        """``(s_e A_e)^T`` for every expert e of the bank: (E, in, r), kept until the bank changes."""
        c = self._bank_t
        if c is None or c[0] != self.bank.version:
            a_t = (self.bank.a * self.bank.scale.to(self.bank.a.dtype)[:, None, None]).transpose(1, 2).contiguous()
            c = self._bank_t = (self.bank.version, a_t)
        return c[1]

    def _fold_parts(self, x3: torch.Tensor, w: GroupWeights) -> tuple[torch.Tensor, torch.Tensor]:
        """``h`` (B, T, k*r) already scaled by ``w_i s_i``, and ``B_sel`` (B, k*r, out)."""
        a_sel, bt_sel, coef = self._gather_rows(w)
        h = torch.bmm(x3.to(a_sel.dtype), a_sel.transpose(1, 2)) * coef[:, None, :]  # (B, T, k*r)
        return h, bt_sel

    def _fold(self, x3: torch.Tensor, w: GroupWeights) -> torch.Tensor:
        if self.group_size in (None, self.bank.rank):
            h, bt_sel = self._fold_parts(x3, w)
            return torch.bmm(h, bt_sel)  # (B, T, out)
        a, bt = self.bank.flat()
        ridx, vr = self._rank_index(w)
        a_sel = a[ridx] * vr[..., None]  # (B, kb, in), weight and scale folded into A
        return torch.bmm(torch.bmm(x3, a_sel.transpose(1, 2)), bt[ridx])  # (B, T, kb) @ (B, kb, out)

    # -- merging --------------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self, weights: torch.Tensor) -> None:
        """Add ``sum_i w_i s_i B_i A_i`` into the base weight in fp32, keeping an unmerged copy."""
        if self._merged_copy is None:
            self._merged_copy = self.base.weight.detach().clone()
        merged = self._merged_copy.float() + self.bank.delta(weights.to(self.bank.scale.device))
        self.base.weight.copy_(merged.to(self.base.weight.dtype))

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the exact base weight saved by :meth:`merge`."""
        if self._merged_copy is not None:
            self.base.weight.copy_(self._merged_copy)
            self._merged_copy = None

    @property
    def merged(self) -> bool:
        return self._merged_copy is not None
