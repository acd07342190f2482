"""The registry artifacts a job reads, resolved and checked at submit time.

Compositions, router training, generator training, generation and transfer all name their inputs as
``ns/name[@version]``. :class:`SourceResolver` turns each into a :class:`ResolvedSource` pinned to a
version and content hash (so the job reads exactly what was checked), and :class:`ResolvedSources`
runs the checks they share: one base model, sample data present, a base with a local weights folder.
Each error names the request field it is about.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core.errors import IncompatibleAdaptersError, InvalidInputError
from hub.core.files import SAMPLES_NAME
from hub.core.refs import AdapterRef
from hub.services.validation import article

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import BaseModel, User
    from hub.services.adapters import AdapterService
    from hub.services.base_models import BaseModelService


@dataclass(frozen=True)
class ResolvedSource:
    """One artifact version a job will read: its name, version, content hash, base model, samples."""

    name: str
    version: int
    sha256: str
    base_model: str
    has_samples: bool
    kind: str = "adapter"

    @property
    def key(self) -> str:
        """``ns/name@version``."""
        return f"{self.name}@{self.version}"

    def pinned(self, *extra: str) -> dict[str, Any]:
        """What a job request records of it: name, version and sha256 (plus the ``extra`` fields named)."""
        d: dict[str, Any] = {"name": self.name, "version": self.version, "sha256": self.sha256}
        for k in extra:
            d[k] = getattr(self, k)
        return d


class ResolvedSources(Sequence[ResolvedSource]):
    """Resolved sources of one request (in request order) and the checks they share.

    Args:
        items: the sources. field: the request field they came from (named by every error).
    """

    def __init__(self, items: Iterable[ResolvedSource], field: str) -> None:
        self.items, self.field = list(items), field

    def __getitem__(self, i: int) -> ResolvedSource:  # type: ignore[override]
        return self.items[i]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ResolvedSource]:
        return iter(self.items)

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.items]

    def distinct(self) -> ResolvedSources:
        """Refuse the same version named twice."""
        keys = self.keys
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise InvalidInputError(f"{self.field} must be distinct; repeated: {dup}", field=self.field)
        return self

    def one_base(self) -> str:
        """The base model they all share.

        Raises:
            IncompatibleAdaptersError: sources for different base models (each named with its base).
        """
        bases = {s.base_model for s in self.items}
        if len(bases) > 1:
            detail = ", ".join(f"{s.key}: {s.base_model}" for s in self.items)
            raise IncompatibleAdaptersError(f"{self.field} are for different base models ({detail})",
                                            field=self.field)
        return bases.pop()

    def of_base(self, base_model: str) -> ResolvedSources:
        """Refuse sources of another base than ``base_model``."""
        wrong = [s.name for s in self.items if s.base_model != base_model]
        if wrong:
            raise IncompatibleAdaptersError(f"{self.field} {wrong} are not adapters of {base_model}",
                                            field=self.field)
        return self

    def with_samples(self, why: str) -> ResolvedSources:
        """Refuse sources without ``samples.jsonl``; ``why`` says what needs them."""
        lacking = [s.key for s in self.items if not s.has_samples]
        if lacking:
            raise InvalidInputError(f"{self.field} without sample data ({SAMPLES_NAME}): {lacking}; {why}",
                                    field=self.field, lacking=lacking)
        return self


class SourceResolver:
    """Resolve references against the registry as a given user sees it.

    Args:
        adapters: reads artifacts (visibility enforced). base_models: the registered bases.
    """

    def __init__(self, adapters: AdapterService, base_models: BaseModelService) -> None:
        self.adapters, self.base_models = adapters, base_models

    def resolve(self, user: User | None, ref: str | AdapterRef, *, field: str, kind: str = "adapter",
                role: str = "source") -> ResolvedSource:
        """``ref`` (latest version when unpinned) as ``user`` sees it.

        Raises:
            InvalidInputError: a malformed ref, or an artifact of another kind (``role`` says what it
                was meant to be, e.g. "expert").
            NotFoundError: no such artifact or version visible to ``user``.
        """
        r = ref if isinstance(ref, AdapterRef) else AdapterRef.parse(ref, field=field)
        row = self.adapters.get(user, r.namespace, r.name)
        if row.kind != kind:
            why = f"; only {kind}s can be {article(role)}" if role != kind else ""
            raise InvalidInputError(f"{r.full_name} is {article(row.kind)}, not {article(kind)}{why}", field=field)
        ver = self.adapters.version(user, r.namespace, r.name, r.version)
        return ResolvedSource(r.full_name, ver.number, ver.sha256, ver.base_model,
                              SAMPLES_NAME in (ver.files or {}), row.kind)

    def resolve_all(self, user: User | None, refs: Iterable[str | AdapterRef], *, field: str,
                    role: str = "source") -> ResolvedSources:
        """Every ref of a request field (adapters), in order."""
        return ResolvedSources([self.resolve(user, r, field=field, role=role) for r in refs], field)

    def base_with_weights(self, base_id: str, *, field: str, why: str) -> tuple[BaseModel, Path]:
        """A registered base and its local weights folder, for jobs that run the base model.

        Raises:
            NotFoundError: the base is not registered.
            InvalidInputError: it has no weights location, or one that is not a local folder (names ``field``).
        """
        from hub.services.inference.models import weights_folder

        base = self.base_models.get(base_id)
        if not base.weights:
            raise InvalidInputError(f"base model {base_id} has no local weights folder; {why} (register it with "
                                    f"its weights: loom base add {base_id} --weights FOLDER)", field=field)
        try:
            return base, weights_folder(base_id, base.weights)
        except InvalidInputError as e:
            raise InvalidInputError(f"{e.message}; {why}", field=field) from None
