"""``model="auto"``: the semantic router (spec routers §8.2) over a base's adapters.

The prompt is embedded once and compared with each candidate adapter's routing vector: its card
embedding, plus (setting ``semantic_router_exemplars``) the mean embedding of its sample prompts, since
exemplars beat free text when both exist. The top-k above the threshold share the request by a softmax
of their scores; below it the base model answers alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.core.files import SAMPLES_NAME

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import Adapter, User
    from hub.services.adapters import AdapterService
    from hub.services.search import SearchService
    from hub.settings import Settings


@dataclass
class AutoChoice:
    """What ``auto`` decided: every candidate's score, and the chosen adapters (``ns/name``) with weights."""

    scores: dict[str, float] = field(default_factory=dict)
    chosen: list[tuple[str, float]] = field(default_factory=list)


class AutoRouter:
    """Choose adapters of a base for a prompt by meaning.

    Args:
        settings: the router's k, threshold, temperature and exemplar setting. adapters: reads sample
        prompts. search: embeds the prompt and retrieves candidates.
    """

    def __init__(self, settings: Settings, adapters: AdapterService, search: SearchService) -> None:
        self.settings, self.adapters, self.search = settings, adapters, search
        self._exemplars: dict[tuple[int, int], Any] = {}  # (adapter id, version) -> unit vector or None

    def choose(self, viewer: User | None, base_id: str, text: str) -> AutoChoice:
        """Score the base's visible adapters against ``text``; choose the top-k above the threshold."""
        import numpy as np
        import torch

        from hub.repositories.adapters import AdapterFilters
        from hub.services.search import MAX_QUERY
        from routing.routers.semantic import SemanticConfig, SemanticRouter

        s = self.settings
        choice = AutoChoice()
        query = text.strip()[-MAX_QUERY:]
        if not query:
            return choice
        qvec = torch.from_numpy(np.array(self.search.embed_query(query))[None, :])  # (1, d), embedded once
        hits = self.search.search(viewer, query, k=max(8, s.semantic_router_k),
                                  filters=AdapterFilters(base_model=base_id, kind="adapter"), vector=qvec[0].numpy())
        hits = [h for h in hits if h.adapter.embedding is not None]
        if not hits:
            return choice
        vecs = torch.from_numpy(np.stack([self._vector(viewer, h.adapter) for h in hits]))  # (n, d)
        threshold = s.semantic_router_threshold
        if threshold is None:  # the same line as search's "match": "weak"
            threshold = self.search.match_threshold
        router = SemanticRouter(vecs, SemanticConfig(k=s.semantic_router_k, threshold=threshold,
                                                     temperature=s.semantic_router_temperature))
        decision = router.route(qvec)[0]
        names = [h.adapter.full_name for h in hits]
        choice.scores = {n: round(float(c), 6) for n, c in zip(names, decision.scores, strict=True)}
        choice.chosen = [(names[i], float(w)) for i, w in zip(decision.indices, decision.weights, strict=True)]
        return choice

    def _vector(self, viewer: User | None, row: Adapter) -> Any:
        """An adapter's routing vector: its card embedding, mixed with its exemplar mean when enabled."""
        import numpy as np

        card = np.frombuffer(row.embedding or b"", dtype=np.float32)
        if not self.settings.semantic_router_exemplars:
            return card
        key = (int(row.id), int(row.latest_version))
        if key not in self._exemplars:
            self._exemplars[key] = self._exemplar(viewer, row)
        ex = self._exemplars[key]
        if ex is None:
            return card
        both = card / max(float(np.linalg.norm(card)), 1e-12) + ex
        return (both / max(float(np.linalg.norm(both)), 1e-12)).astype(np.float32)

    def _exemplar(self, viewer: User | None, row: Adapter, most: int = 16) -> Any:
        """Unit mean embedding of up to ``most`` sample prompts of the adapter's latest version, or None."""
        import numpy as np

        from hub.services.validation import parse_samples
        from routing.features import request_text

        ver = self.adapters.version(viewer, row.namespace, row.name)
        if SAMPLES_NAME not in (ver.files or {}):
            return None
        rows = parse_samples(self.adapters.version_file(ver, SAMPLES_NAME))  # validated at publish
        prompts = [t for t in (request_text(r["input"]) for r in rows) if t][:most]
        if not prompts:
            return None
        mean = self.search.embed(prompts).mean(0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
