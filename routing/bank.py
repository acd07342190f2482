"""An expert bank in rank space for one linear site (spec §1, §7.1).

Experts are stored zero-padded to a common rank ``r`` as ``a`` (N, r, in) and ``bt`` (N, r, out),
so that the concatenations of the spec are plain views: ``A = a.reshape(N*r, in)`` (R, in) and
``B = bt.reshape(N*r, out).T`` (out, R). Zero-padding a rank is exact (an extra zero row of A and
zero column of B change nothing), and an expert that does not adapt this site is all zeros.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hub.core.adapter import LoraLayer
from hub.core.errors import IncompatibleAdaptersError


class ExpertBank(nn.Module):
    """N LoRA experts of one site, padded to rank ``r``; per-expert scale ``s_i``.

    Attributes:
        a: (N, r, in) parameter, the experts' A rows (zero rows are padding).
        bt: (N, r, out) parameter, the experts' B columns, transposed.
        scale: (N,) buffer, ``alpha_i / r_i`` (or rsLoRA) of each expert; 0 for a missing expert.
        ranks: the true rank of each expert at this site (0 when missing).
    """

    scale: torch.Tensor

    def __init__(self, n: int, r: int, in_features: int, out_features: int, *,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.a = nn.Parameter(torch.zeros(n, r, in_features, dtype=dtype, device=device), requires_grad=False)
        self.bt = nn.Parameter(torch.zeros(n, r, out_features, dtype=dtype, device=device), requires_grad=False)
        self.register_buffer("scale", torch.zeros(n, dtype=torch.float32, device=device))
        self.ranks: list[int] = [0] * n
        self.scales: list[float] = [0.0] * n  # python copy of ``scale`` for host-side fast paths
        self.version = 0  # bumped on every change, so gathered copies can be cached

    @classmethod
    def from_layers(cls, layers: Sequence[LoraLayer | None], in_features: int, out_features: int, *,
                    r: int | None = None, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None, site: str = "?") -> ExpertBank:
        """Stack ``layers`` (None = this expert does not adapt the site) into a bank.

        Raises:
            IncompatibleAdaptersError: a layer whose shape does not fit the site.
        """
        r_max = max([la.rank for la in layers if la is not None] + [r or 1])
        bank = cls(len(layers), r_max, in_features, out_features, dtype=dtype, device=device)
        for i, la in enumerate(layers):
            if la is not None:
                bank.set_expert(i, la, site=site)
        return bank

    @property
    def n_experts(self) -> int:
        return int(self.a.shape[0])

    @property
    def rank(self) -> int:
        return int(self.a.shape[1])

    @property
    def total_rank(self) -> int:
        return self.n_experts * self.rank

    def set_expert(self, i: int, layer: LoraLayer | None, *, site: str = "?") -> None:
        """Write ``layer`` into slot ``i`` (None clears it), growing the padded rank if needed."""
        self.version += 1
        with torch.no_grad():
            if layer is None:
                self.a[i].zero_()
                self.bt[i].zero_()
                self.scale[i] = 0.0
                self.ranks[i], self.scales[i] = 0, 0.0
                return
            if (layer.out_features, layer.in_features) != (self.out_features, self.in_features):
                raise IncompatibleAdaptersError(
                    f"module {site!r}: LoRA is {(layer.out_features, layer.in_features)} (out, in) but the "
                    f"base linear is {(self.out_features, self.in_features)}"
                )
            if layer.rank > self.rank:
                self.resize(self.n_experts, layer.rank)
            self.a[i].zero_()
            self.bt[i].zero_()
            self.a[i, : layer.rank].copy_(layer.a.to(self.a.dtype))
            self.bt[i, : layer.rank].copy_(layer.b.t().to(self.bt.dtype))
            self.scale[i] = layer.scaling
            self.ranks[i], self.scales[i] = layer.rank, float(layer.scaling)

    def resize(self, n: int, r: int) -> None:
        """Grow (or shrink) to ``n`` slots of padded rank ``r``, keeping existing experts."""
        self.version += 1
        n0, r0 = self.n_experts, self.rank
        if n < n0 and any(self.ranks[n:]):
            raise ValueError("cannot drop occupied expert slots")
        if r < max(self.ranks, default=0):
            raise ValueError(f"rank r must be >= {max(self.ranks)}, got {r}")
        a = torch.zeros(n, r, self.in_features, dtype=self.a.dtype, device=self.a.device)
        bt = torch.zeros(n, r, self.out_features, dtype=self.bt.dtype, device=self.bt.device)
        scale = torch.zeros(n, dtype=self.scale.dtype, device=self.scale.device)
        m, rr = min(n, n0), min(r, r0)
        a[:m, :rr] = self.a.data[:m, :rr]
        bt[:m, :rr] = self.bt.data[:m, :rr]
        scale[:m] = self.scale[:m]
        grad = self.a.requires_grad
        self.a = nn.Parameter(a, requires_grad=grad)
        self.bt = nn.Parameter(bt, requires_grad=grad)
        self.scale = scale
        self.ranks = (self.ranks + [0] * n)[:n]
        self.scales = (self.scales + [0.0] * n)[:n]

    def set_scale(self, i: int, value: float) -> None:
        """Override expert ``i``'s scale (e.g. SMoRA's alpha / k)."""
        self.version += 1
        self.scale[i] = value
        self.scales[i] = float(value)

    def flat(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``A`` (R, in) and ``B^T`` (R, out) as views of the padded bank."""
        return self.a.reshape(-1, self.in_features), self.bt.reshape(-1, self.out_features)

    def delta(self, weights: torch.Tensor) -> torch.Tensor:
        """The dense update ``sum_i w_i s_i B_i A_i`` (out, in) for expert weights (N,), in fp32."""
        w = weights.float() * self.scale  # (N,)
        return torch.einsum("n,nro,nri->oi", w, self.bt.float(), self.a.float())
