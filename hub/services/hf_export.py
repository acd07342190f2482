"""Export a registry version to the Hugging Face Hub.

Export writes the version's PEFT files to a temporary folder, renders a model card with
:func:`hub.hf_sync.card_for_provenance` (``library_name: peft``, ``base_model``,
``base_model_relation: adapter``, ``base_model:adapter:<id>``; for a composed adapter its parents as
``merged_from`` and its recipe), pushes both in one commit and records the commit sha in
``hf_exports``. Parents that were themselves imported from the Hub are named by their Hub repo and
commit in the card, others by their Loom name and version. Only an adapter's owner may export it,
since the push uses the deployment's Hub token.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.core.errors import AuthenticationError, InvalidInputError, PermissionDeniedError
from hub.core.files import CONFIG_NAME, WEIGHTS_NAME
from hub.core.refs import AdapterRef
from hub.db.hf import HfExport
from hub.hf_sync.refs import SOURCE_PREFIX, parse_source, validate_repo_id
from hub.repositories import adapters as repo
from hub.services import validation as v

if TYPE_CHECKING:  # pragma: no cover
    from hub.core.provenance import Provenance
    from hub.db.models import AdapterVersion, User
    from hub.services.adapters import AdapterService
    from hub.services.hf_client import HubClient
    from hub.storage import BlobStore


@dataclass(frozen=True)
class ExportResult:
    """A pushed version: the Hub repo, the commit it made, and where to see it."""

    name: str
    version: int
    repo_id: str
    commit_sha: str
    url: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class HfExporter:
    """Push registry versions to the Hub with a generated card; record each push.

    Args:
        client: the Hub client (its token must be able to write). sessions: the DB (``hf_exports``).
        adapters: reads versions (ownership checked). blobs: the version's files. cache_dir: where pushes are staged.
    """

    def __init__(self, client: HubClient, sessions: sessionmaker[Session], adapters: AdapterService,
                 blobs: BlobStore, *, cache_dir: Path) -> None:
        self.client, self.sessions, self.adapters, self.blobs = client, sessions, adapters, blobs
        self.cache_dir = cache_dir

    def export(self, user: User | None, ref: str, repo_id: str, *, private: bool = False,
               commit_message: str | None = None) -> ExportResult:
        """Push version ``ns/name[@version]`` (latest by default) to ``repo_id`` with a generated card.

        Raises:
            AuthenticationError: no user, or no Hub token configured.
            PermissionDeniedError: the caller does not own the adapter, or the token may not write there.
            NotFoundError: no such adapter or version. InvalidInputError: a bad ref or repo id.
            UpstreamError: the Hub failed; nothing is recorded then.
        """
        from hub.hf_sync.push import push_adapter

        if user is None:
            raise AuthenticationError("exporting to the Hugging Face Hub needs an API token")
        r = AdapterRef.parse(ref)
        ns, nm, number = r.namespace, r.name, r.version
        validate_repo_id(repo_id)
        adapter = self.adapters.get(user, ns, nm)
        if adapter.owner_id != user.id:
            raise PermissionDeniedError(f"only the owner of {ns}/{nm} can export it to the Hugging Face Hub")
        ver = self.adapters.version(user, ns, nm, number)
        card = self._card(ver, adapter.full_name, adapter.description, adapter.license, list(adapter.tags or []))
        root = self.cache_dir / "hf"
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="export-", dir=root))
        try:
            for filename in (CONFIG_NAME, WEIGHTS_NAME):
                with (tmp / filename).open("wb") as f:
                    for chunk in self.blobs.iter_bytes(ver.files[filename]["key"]):
                        f.write(chunk)
            sha = push_adapter(self.client.api, tmp, repo_id, card, private,
                               commit_message=commit_message or f"Upload {ns}/{nm}@{ver.number} from Loom",
                               policy=self.client.policy)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        with self.sessions.begin() as s:
            s.add(HfExport(version_id=ver.id, repo_id=repo_id, commit_sha=sha, created_by_id=user.id))
        url = f"{self.client.endpoint}/{repo_id}"
        return ExportResult(f"{ns}/{nm}", ver.number, repo_id, sha, url)

    def exports(self, version_id: int) -> list[HfExport]:
        """The recorded pushes of a version, oldest first."""
        with self.sessions() as s:
            return list(s.scalars(select(HfExport).where(HfExport.version_id == version_id).order_by(HfExport.id)))

    def _card(self, ver: AdapterVersion, full_name: str, description: str, license: str | None,  # noqa: A002
              tags: list[str]) -> str:
        from hub.core.provenance import Provenance
        from hub.hf_sync.cards import card_for_provenance

        prov = self._hub_parents(Provenance.from_dict(ver.provenance)) if ver.provenance else None
        source = ver.source if ver.source.startswith(SOURCE_PREFIX) else f"loom:{full_name}@{ver.number}"
        return card_for_provenance(prov, base_model=ver.base_model, name=full_name, description=description,
                                   license=license, tags=[t for t in tags if not t.startswith("base_model:")],
                                   source=source)

    def _hub_parents(self, prov: Provenance) -> Provenance:
        """Name parents imported from the Hub by their repo id and commit, so the Hub links the lineage."""
        out = []
        for p in prov.parents:
            try:
                pns, pnm = v.parse_name(p.name)
                number = int(p.version) if p.version not in (None, "") else None
                with self.sessions() as s:
                    a = repo.get_adapter(s, pns, pnm)
                    pv = repo.get_version(s, a, number) if a is not None else None
                if pv is not None and pv.source.startswith(SOURCE_PREFIX):
                    hub_id, sha = parse_source(pv.source)
                    p = dataclasses.replace(p, name=hub_id, version=sha)
            except (InvalidInputError, ValueError):
                pass  # a parent name that is not a Loom name stays as it is
            out.append(p)
        return dataclasses.replace(prov, parents=tuple(out))
