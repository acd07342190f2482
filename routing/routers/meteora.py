"""MeteoRA: per-token top-k gates in every target linear (arXiv 2405.13053).

Paper: https://arxiv.org/abs/2405.13053 . Each site owns a bias-free linear gate over the N
experts reading that site's own input; top-k of the logits, weights ``softmax(z_S / T)`` (k = 1:
weight exactly 1). Trained with the supervised gate CE ``-log softmax(z_t)[y_t]`` (×50), where
``y_t`` is the index of the expert whose data the example came from, on every token.
Deliberate differences: the temperature applies at training too when set (the released code ignores
it there; leave T = 1 for training), and LoRA dropout is the config's value, not a hard-coded 0.1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from hub.core.adapter import LoraAdapter
from hub.core.errors import InvalidInputError
from routing import losses
from routing.config import RouterConfig, RouterPreset, check_choice, check_positive
from routing.gates import GateSpec, TokenGate, gate_width
from routing.model import RoutedModel
from routing.routers._common import per_site, sites_for


@dataclass(frozen=True)
class MeteoraConfig(RouterConfig):
    """Attributes: k (experts per token), temperature (T of the top-k softmax), placement,
    ce_coef (weight of the supervised gate CE), trainable (``gate`` as in the paper, or
    ``gate+experts`` as in the released script), sum_to_k (multi-intent requests: the top-k softmax
    weights are scaled to add up to k, so with a high temperature each chosen expert acts at full
    strength, a sum of the adapters as a ``cat`` merge is, instead of a 1/k share of each), min_prob
    (of the top-k keep the experts whose gate probability is at least this: one for a request the gate
    is sure of, several for one that names several tasks), multi_label (each expert's gate score is its
    own sigmoid, trained with a binary CE to "is this my task?" instead of the softmax CE, and every expert
    of the top-k scoring at least ``min_prob``, default 0.5, acts at full strength), mix_intents (with
    ``multi_label`` and ``features="embedding"``: this share of every training batch is a synthetic request
    naming two experts' tasks, two sample prompts of different experts joined, labelled with both; the
    experts' data hold one task per prompt, so without it the gates learn that one task's words mean "not
    the others" and never switch on two)."""

    k: int = 2
    temperature: float = 1.0
    sum_to_k: bool = False
    min_prob: float = 0.0
    multi_label: bool = False
    mix_intents: float = 0.0
    placement: str = "all_linear"
    ce_coef: float = 50.0
    trainable: str = "gate"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("k", self.k)
        check_positive("temperature", self.temperature)
        check_positive("ce_coef", self.ce_coef, allow_zero=True)
        if not 0.0 <= self.min_prob < 1.0:
            raise InvalidInputError(f"min_prob must be in [0, 1), got {self.min_prob}")
        check_choice("trainable", self.trainable, ("gate", "gate+experts"))
        if not 0.0 <= self.mix_intents < 1.0:
            raise InvalidInputError(f"mix_intents must be in [0, 1), got {self.mix_intents}")
        if self.mix_intents and not (self.multi_label and self.features == "embedding"):
            raise InvalidInputError("mix_intents trains multi-label gates on request features: it needs "
                                    "multi_label=true and features='embedding'")


def build(model: nn.Module, experts: Sequence[LoraAdapter], config: MeteoraConfig, *,
          names: Sequence[str] | None = None) -> RoutedModel:
    """One TokenGate per site over the N experts."""
    n = len(experts)
    if config.multi_label:
        spec = GateSpec(score="sigmoid", k=min(config.k, n), weights="sum_to_k", min_prob=config.min_prob or 0.5)
    else:
        spec = GateSpec(k=min(config.k, n), weights="sum_to_k" if config.sum_to_k else "softmax_topk",
                        temperature=config.temperature, min_prob=config.min_prob)
    routed = per_site(model, experts, names, sites_for(model, experts, config.placement),
                      lambda site, lin, bank: TokenGate(gate_width(lin.in_features, config), n, spec, external=config.features == "embedding"),
                      backend=config.backend, dropout=config.dropout)
    routed.set_trainable(config.trainable)
    return routed


def aux_loss(routed: RoutedModel, task_ids: torch.Tensor | None) -> torch.Tensor:
    """``ce_coef * CE(gate logits, task label)`` (``multi_label``: the binary CE to the one-hot label, or to
    the (B, N) multi-hot targets ``task_ids`` of a batch with synthetic two-task requests) averaged over sites
    and real tokens."""
    if task_ids is None:
        return torch.zeros(())
    ctx = routed.context
    m = next((r[-1].logits.shape[0] for r in ctx.records.values() if r and r[-1].logits is not None), 0)
    labels = losses.token_labels(task_ids, m // max(task_ids.shape[0], 1))
    loss = losses.supervised_bce if routed.config.multi_label else losses.supervised_ce
    return routed.config.ce_coef * loss(ctx.records, labels, ctx.token_mask)


PRESET = RouterPreset("meteora", MeteoraConfig, build, aux_loss, granularity="token", uses_task_labels=True,
                      paper="https://arxiv.org/abs/2405.13053",
                      summary="per-token top-k gate in every target linear, temperature T")
