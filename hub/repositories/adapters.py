"""Adapter, version and lineage queries (no commits)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, cast, func, or_, select, true
from sqlalchemy.orm import Session

from hub.core.errors import NotFoundError
from hub.core.provenance import Provenance
from hub.core.refs import parse_name
from hub.db.models import Adapter, AdapterVersion, LineageEdge, User


def visible_to(viewer: User | None) -> ColumnElement[bool]:
    """Adapters ``viewer`` may see: public ones, and their own private ones."""
    if viewer is None:
        return Adapter.visibility == "public"
    return or_(Adapter.visibility == "public", Adapter.owner_id == viewer.id)


@dataclass(frozen=True)
class AdapterFilters:
    """Filters of listings and search; ``None`` means "any"."""

    base_model: str | None = None
    tag: str | None = None
    license: str | None = None
    owner: str | None = None
    min_rank: int | None = None
    max_rank: int | None = None
    kind: str | None = None
    namespace: str | None = None


def filter_clause(f: AdapterFilters) -> ColumnElement[bool]:
    """SQL for ``f`` (tags are matched in Python by callers that need them: JSON arrays differ by backend)."""
    parts: list[ColumnElement[bool]] = [true()]
    if f.base_model:
        parts.append(Adapter.base_model == f.base_model)
    if f.license:
        parts.append(Adapter.license == f.license)
    if f.owner:
        parts.append(Adapter.owner_id.in_(select(User.id).where(User.name == f.owner)))
    if f.min_rank is not None:
        parts.append(Adapter.latest_rank >= f.min_rank)
    if f.max_rank is not None:
        parts.append(Adapter.latest_rank <= f.max_rank)
    if f.kind:
        parts.append(Adapter.kind == f.kind)
    if f.namespace:
        parts.append(Adapter.namespace == f.namespace)
    return and_(*parts)


def _tag_ok(a: Adapter, tag: str | None) -> bool:
    return tag is None or tag in (a.tags or [])


def get_adapter(session: Session, namespace: str, name: str) -> Adapter | None:
    return session.scalar(select(Adapter).where(Adapter.namespace == namespace, Adapter.name == name))


def get_adapter_for_update(session: Session, namespace: str, name: str) -> Adapter | None:
    stmt = select(Adapter).where(Adapter.namespace == namespace, Adapter.name == name)
    if session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update(of=Adapter)
    return session.scalar(stmt)


def list_adapters(
    session: Session, viewer: User | None, f: AdapterFilters, *, offset: int = 0, limit: int = 50
) -> tuple[list[Adapter], int]:
    """Visible adapters matching ``f``, newest first, and the total count."""
    stmt: Select[tuple[Adapter]] = (
        select(Adapter).where(visible_to(viewer), filter_clause(f)).order_by(Adapter.updated_at.desc(), Adapter.id)
    )
    if f.tag is None:
        total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
        return list(session.scalars(stmt.offset(offset).limit(limit))), total
    rows = [a for a in session.scalars(stmt) if _tag_ok(a, f.tag)]
    return rows[offset : offset + limit], len(rows)


def allowed_ids(session: Session, viewer: User | None, f: AdapterFilters) -> list[int]:
    """Ids of visible adapters matching ``f`` (the search engine's allowed set)."""
    if f.tag is None:
        return list(session.scalars(select(Adapter.id).where(visible_to(viewer), filter_clause(f))))
    rows = session.execute(select(Adapter.id, Adapter.tags).where(visible_to(viewer), filter_clause(f)))
    return [i for i, tags in rows if f.tag in (tags or [])]


def adapters_by_ids(session: Session, ids: Sequence[int]) -> dict[int, Adapter]:
    if not ids:
        return {}
    return {a.id: a for a in session.scalars(select(Adapter).where(Adapter.id.in_(list(ids))))}


def exact_matches(session: Session, viewer: User | None, query: str, ids: Sequence[int] | None) -> list[int]:
    """Adapters whose full name, short name or one of whose tags equals ``query`` (case-insensitive).

    Only a single token can match (names and tags have no spaces), so sentences cost no query.
    """
    q = query.strip().lower()
    if not q or any(c.isspace() for c in q) or len(q) > 129 or '"' in q or "\\" in q:
        return []
    stmt = select(Adapter.id, Adapter.tags).where(visible_to(viewer))
    if ids is not None:
        stmt = stmt.where(Adapter.id.in_(list(ids)))
    ns, _, short = q.rpartition("/")
    name_clause = and_(Adapter.namespace == ns, Adapter.name == short) if ns else Adapter.name == q
    out = [row.id for row in session.execute(stmt.where(name_clause).order_by(Adapter.id))]
    # tags: a text match on the JSON array narrows the rows in SQL, Python confirms the exact element
    like = cast(Adapter.tags, String).like(f'%"{q}"%')
    for row in session.execute(stmt.where(like).order_by(Adapter.downloads.desc(), Adapter.id).limit(1000)):
        if row.id not in out and q in [str(t).lower() for t in (row.tags or [])]:
            out.append(row.id)
    return out


def get_version(session: Session, adapter: Adapter, number: int | None) -> AdapterVersion | None:
    """Version ``number`` of ``adapter``, or its latest when ``number`` is None."""
    stmt = select(AdapterVersion).where(AdapterVersion.adapter_id == adapter.id)
    if number is None:
        stmt = stmt.order_by(AdapterVersion.number.desc()).limit(1)
    else:
        stmt = stmt.where(AdapterVersion.number == number)
    return session.scalar(stmt)


def list_versions(session: Session, adapter: Adapter) -> list[AdapterVersion]:
    return list(
        session.scalars(
            select(AdapterVersion).where(AdapterVersion.adapter_id == adapter.id).order_by(AdapterVersion.number)
        )
    )


def find_version_by_sha(session: Session, adapter: Adapter, sha256: str) -> AdapterVersion | None:
    return session.scalar(
        select(AdapterVersion).where(AdapterVersion.adapter_id == adapter.id, AdapterVersion.sha256 == sha256)
    )


def max_version_number(session: Session, adapter_id: int) -> int:
    return session.scalar(select(func.max(AdapterVersion.number)).where(AdapterVersion.adapter_id == adapter_id)) or 0


def lineage(session: Session, version: AdapterVersion) -> tuple[list[LineageEdge], list[LineageEdge]]:
    """(edges to parents, edges to children) of ``version``."""
    parents = list(session.scalars(select(LineageEdge).where(LineageEdge.child_id == version.id)))
    children = list(session.scalars(select(LineageEdge).where(LineageEdge.parent_id == version.id)))
    return parents, children


def version_labels(session: Session, version_ids: Sequence[int], viewer: User | None = None,
                   *, visible_only: bool = False) -> dict[int, str]:
    """``version id -> "ns/name@N"`` (with ``visible_only``, only versions of adapters ``viewer`` may see)."""
    if not version_ids:
        return {}
    stmt = (
        select(AdapterVersion.id, Adapter.namespace, Adapter.name, AdapterVersion.number)
        .join(Adapter, Adapter.id == AdapterVersion.adapter_id)
        .where(AdapterVersion.id.in_(list(version_ids)))
    )
    if visible_only:
        stmt = stmt.where(visible_to(viewer))
    rows = session.execute(stmt)
    return {r[0]: f"{r[1]}/{r[2]}@{r[3]}" for r in rows}


def all_version_files(session: Session) -> list[tuple[int, str, dict, str]]:
    """(version id, "ns/name@N", files, artifact kind) of every version (for fsck)."""
    rows = session.execute(
        select(AdapterVersion.id, Adapter.namespace, Adapter.name, AdapterVersion.number, AdapterVersion.files,
               Adapter.kind).join(Adapter, Adapter.id == AdapterVersion.adapter_id)
    )
    return [(r[0], f"{r[1]}/{r[2]}@{r[3]}", r[4] or {}, r[5]) for r in rows]


def _embedded_by(model: str, prefix: str) -> ColumnElement[bool]:
    """Rows with an embedding whose model is ``model`` or starts with ``prefix``."""
    return and_(Adapter.embedding.is_not(None),
                or_(Adapter.embedding_model == model, Adapter.embedding_model.startswith(prefix)))


def embeddings_for_index(session: Session, model: str,
                         prefix: str) -> list[tuple[int, bytes | None, str | None, str | None]]:
    """(adapter id, embedding bytes, embedding model, embedding hash) of the adapters with an embedding whose
    model is ``model`` or starts with ``prefix`` (the search index's start-up build)."""
    stmt = select(Adapter.id, Adapter.embedding, Adapter.embedding_model, Adapter.embedding_hash)
    return [(int(i), b, m, h) for i, b, m, h in session.execute(stmt.where(_embedded_by(model, prefix))
                                                                   .order_by(Adapter.id))]


def embedding_hashes_of_models(session: Session, model: str,
                               prefix: str) -> list[tuple[int, str | None, str | None]]:
    """(adapter id, embedding hash, embedding model) of the adapters with an embedding whose model is ``model``
    or starts with ``prefix``, by id."""
    stmt = select(Adapter.id, Adapter.embedding_hash, Adapter.embedding_model).where(_embedded_by(model, prefix))
    return [(int(i), h, m) for i, h, m in session.execute(stmt.order_by(Adapter.id))]


def watermark(session: Session) -> tuple[Any, ...]:
    """A cheap summary of the adapters table that moves whenever a row is added or changed or its vector is
    stored again: its highest id, newest ``updated_at`` and newest ``embedded_at`` (three index lookups; a
    deleted row does not move it, see ``SearchService.refresh``)."""
    return (session.scalar(select(func.max(Adapter.id))), session.scalar(select(func.max(Adapter.updated_at))),
            session.scalar(select(func.max(Adapter.embedded_at))))


def embedding_hashes_since(session: Session, since: Any, after_id: int,
                           embedded_since: Any = None) -> list[tuple[int, str | None, str | None]]:
    """(adapter id, embedding hash, embedding model) of the adapters changed at or after ``since`` (an
    ``updated_at``), with an id above ``after_id``, or whose vector was stored at or after ``embedded_since``
    (an ``embedded_at``; None: ever), through the ``updated_at`` and ``embedded_at`` indexes and the primary key."""
    stmt = select(Adapter.id, Adapter.embedding_hash, Adapter.embedding_model)
    stored = Adapter.embedded_at.is_not(None) if embedded_since is None else Adapter.embedded_at >= embedded_since
    stmt = stmt.where(or_(Adapter.updated_at >= since, Adapter.id > after_id, stored))
    return [(int(i), h, m) for i, h, m in session.execute(stmt)]


def embeddings_of(session: Session, ids: Sequence[int]) -> dict[int, bytes]:
    """Embedding bytes of the adapters ``ids`` that have one."""
    out: dict[int, bytes] = {}
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        rows = session.execute(select(Adapter.id, Adapter.embedding).where(Adapter.id.in_(chunk)))
        out.update({int(i): b for i, b in rows if b is not None})
    return out


def allowed_ids_among(session: Session, viewer: User | None, ids: Sequence[int]) -> list[int]:
    """Which of ``ids`` ``viewer`` may see (the engine's predicate when no filter is set)."""
    if not ids:
        return []
    return list(session.scalars(select(Adapter.id).where(visible_to(viewer), Adapter.id.in_([int(i) for i in ids]))))


def add_lineage(session: Session, child: AdapterVersion, provenance: Provenance) -> None:
    """One lineage edge from each parent of ``provenance`` (``ns/name`` + version, latest if none) to ``child``.

    Raises:
        NotFoundError: a parent that does not exist (the caller's transaction then rolls back).
    """
    for p in provenance.parents:
        pns, pnm = parse_name(p.name)
        parent_adapter = get_adapter(session, pns, pnm)
        number = int(p.version) if p.version not in (None, "") else None
        parent = get_version(session, parent_adapter, number) if parent_adapter else None
        if parent is None:
            raise NotFoundError(f"lineage parent {p.name}@{p.version or 'latest'} does not exist")
        session.add(LineageEdge(parent_id=parent.id, child_id=child.id, method=provenance.method,
                                recipe=provenance.recipe, weight=p.weight))
