"""Import one LoRA adapter from a Hub repo: resolve the revision to a sha, fetch only the adapter files.

Only ``adapter_config.json``, ``adapter_model.safetensors`` and ``README.md`` are downloaded, all at
the resolved commit sha (so a push in between cannot mix two versions). Pickle weights are never
downloaded. Files land in a hidden staging folder next to ``dest_dir``, are validated with
:func:`hub.core.peft_io.load_peft`, and only then renamed into place: a failure at any point
leaves nothing at ``dest_dir`` and a retry starts clean.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core.errors import ConflictError, InvalidAdapterError, PayloadTooLargeError
from hub.core.files import CONFIG_NAME, README_NAME, WEIGHTS_NAME
from hub.hf_sync.errors import CallContext
from hub.hf_sync.refs import source_uri, validate_repo_id
from hub.hf_sync.retry import DEFAULT_POLICY, RetryPolicy, call_hub

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from hub.core.adapter import LoraAdapter

log = logging.getLogger(__name__)

CARD_NAME = README_NAME
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass(frozen=True)
class FetchedAdapter:
    """An adapter fetched from the Hub, pinned to a commit.

    Attributes:
        repo_id: ``org/repo``.
        revision: the revision asked for (branch, tag or sha), None for the default branch.
        sha: the commit sha every file was read at.
        source: ``hf:org/repo@sha``, the provenance string to register.
        path: the folder holding the downloaded files (``dest_dir``).
        files: names of the files in ``path``.
        adapter_config: the parsed ``adapter_config.json``.
        card_data: the model card's YAML front matter (empty without a card).
        description: the model card's body (markdown, front matter removed).
        base_model: ``base_model_name_or_path`` from the config, else the card's ``base_model``.
        license, tags, datasets: from the card (tags also from the Hub's listing).
        private, gated: the repo's visibility at fetch time.
        adapter: the validated :class:`LoraAdapter` (excluded from repr and equality).
    """

    repo_id: str
    revision: str | None
    sha: str
    source: str
    path: Path
    files: tuple[str, ...]
    adapter_config: dict[str, Any]
    card_data: dict[str, Any]
    description: str
    base_model: str | None
    license: str | None
    tags: tuple[str, ...]
    datasets: tuple[str, ...]
    private: bool = False
    gated: bool | str = False
    adapter: LoraAdapter | None = field(default=None, repr=False, compare=False)


def has_token(api: HfApi) -> bool:
    token = getattr(api, "token", None)
    if token is False:
        return False
    if isinstance(token, str):
        return bool(token)
    from huggingface_hub import get_token

    return get_token() is not None


def _select_files(repo_id: str, sha: str, siblings: list[Any], subfolder: str | None) -> dict[str, str]:
    """Map local file names to repo paths for the adapter files; refuse non-LoRA and pickle-only repos."""
    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    names = {s.rfilename for s in siblings or []}
    where = f"{repo_id}@{sha[:12]}" + (f" (subfolder {subfolder!r})" if subfolder else "")
    if prefix + CONFIG_NAME not in names:
        raise InvalidAdapterError(f"{where} is not a LoRA repository: it has no {CONFIG_NAME}")
    if prefix + WEIGHTS_NAME not in names:
        pickles = sorted(n for n in names if n.startswith(prefix) and n.endswith(_PICKLE_SUFFIXES))
        if pickles:
            raise InvalidAdapterError(
                f"{where} has only pickle weights ({', '.join(pickles)}); pickles are never downloaded or "
                f"loaded. Ask the author for {WEIGHTS_NAME} (peft: save_pretrained(safe_serialization=True))")
        raise InvalidAdapterError(f"{where} is not a LoRA repository: it has no {WEIGHTS_NAME}")
    wanted = {CONFIG_NAME: prefix + CONFIG_NAME, WEIGHTS_NAME: prefix + WEIGHTS_NAME}
    if prefix + CARD_NAME in names:
        wanted[CARD_NAME] = prefix + CARD_NAME
    elif CARD_NAME in names:
        wanted[CARD_NAME] = CARD_NAME  # the repo's card describes adapters in subfolders too
    return wanted


def read_card(text: str) -> tuple[dict[str, Any], str]:
    """Parse a model card with huggingface_hub's ModelCard: (front matter dict, body)."""
    import yaml
    from huggingface_hub import ModelCard

    try:
        card = ModelCard(text, ignore_metadata_errors=True)
    except (ValueError, yaml.YAMLError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InvalidAdapterError(f"{CARD_NAME}: the model card front matter is not valid YAML ({first})") from None
    return card.data.to_dict(), card.text.strip()


def _as_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _prepare_dest(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConflictError(f"destination {dest} already exists and is not an empty folder")
    dest.parent.mkdir(parents=True, exist_ok=True)


def fetch_adapter(
    api: HfApi,
    repo_id: str,
    revision: str | None = None,
    *,
    dest_dir: str | os.PathLike[str],
    subfolder: str | None = None,
    max_bytes: int | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> FetchedAdapter:
    """Download and validate the LoRA adapter of a Hub model repo, pinned to a commit sha.

    Args:
        api: a configured ``HfApi`` (endpoint, token).
        repo_id: ``org/repo``.
        revision: branch, tag or commit sha; None for the default branch.
        dest_dir: folder to create (must not exist, or be empty) with the adapter files.
        subfolder: the adapter's folder inside the repo, if not at the root.
        max_bytes: refuse weights larger than this (checked from the Hub's metadata before download).
        policy: retry policy for rate limits and 5xx.

    Returns:
        A :class:`FetchedAdapter`; ``source`` is ``hf:org/repo@sha``.

    Raises:
        NotFoundError: unknown repo (with a token) or revision.
        AuthenticationError / PermissionDeniedError: private or gated without (sufficient) token.
        InvalidAdapterError: not a LoRA repository, pickle-only weights, invalid files or card.
        PayloadTooLargeError: weights over ``max_bytes``.
        ConflictError: ``dest_dir`` exists and is not empty.
        UpstreamError: rate limited past the retries, or the network failed (nothing is left behind).
    """
    validate_repo_id(repo_id)
    dest = Path(dest_dir)
    _prepare_dest(dest)
    authed = has_token(api)
    ctx = CallContext("reading", repo_id, revision, authed)
    info = call_hub(api.model_info, repo_id, revision=revision, files_metadata=max_bytes is not None,
                    ctx=ctx, policy=policy)
    sha = str(info.sha)
    wanted = _select_files(repo_id, sha, list(info.siblings or []), subfolder)
    if max_bytes is not None:
        sizes = {s.rfilename: s.size for s in info.siblings or []}
        size = sizes.get(wanted[WEIGHTS_NAME])
        if size is not None and size > max_bytes:
            raise PayloadTooLargeError(f"{repo_id}@{sha[:12]}: {WEIGHTS_NAME} is {size} bytes, over the "
                                       f"limit of {max_bytes}")
    staging = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:12]}"
    try:
        staging.mkdir()
        download_dir, cache_dir, final = staging / "download", staging / "cache", staging / "adapter"
        final.mkdir()
        dl_ctx = CallContext("downloading", repo_id, sha, authed)
        for local_name, repo_path in wanted.items():
            got = call_hub(api.hf_hub_download, repo_id, repo_path, revision=sha, local_dir=download_dir,
                           cache_dir=cache_dir, ctx=dl_ctx, policy=policy)
            os.replace(got, final / local_name)
        result = _finish(repo_id, revision, sha, info, final, dest, max_bytes)
        try:
            if dest.exists():
                dest.rmdir()  # empty: checked by _prepare_dest; fails if something was written meanwhile
            os.replace(final, dest)
        except OSError:
            raise ConflictError(f"destination {dest} was filled by someone else during the download") from None
        log.info("fetched %s@%s into %s", repo_id, sha, dest)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _finish(repo_id: str, revision: str | None, sha: str, info: Any, folder: Path, dest: Path,
            max_bytes: int | None) -> FetchedAdapter:
    """Validate the staged files and build the result (pointing at ``dest``, where they will be moved)."""
    from hub.core.peft_io import load_peft, parse_config

    where = f"{repo_id}@{sha[:12]}"
    try:
        adapter = load_peft(folder, max_bytes=max_bytes)
        config = parse_config((folder / CONFIG_NAME).read_bytes())
    except InvalidAdapterError as e:
        raise type(e)(f"{where} is not a usable LoRA adapter: {e.message}") from None
    card: dict[str, Any] = {}
    description = ""
    if (folder / CARD_NAME).is_file():
        card, description = read_card((folder / CARD_NAME).read_text(encoding="utf-8", errors="replace"))
    card_base = _as_list(card.get("base_model"))
    base_model = config.get("base_model_name_or_path") or (card_base[0] if card_base else None)
    tags = tuple(dict.fromkeys(_as_list(card.get("tags")) + _as_list(getattr(info, "tags", None))))
    return FetchedAdapter(
        repo_id=repo_id, revision=revision, sha=sha, source=source_uri(repo_id, sha), path=dest,
        files=tuple(sorted(p.name for p in folder.iterdir())), adapter_config=config, card_data=card,
        description=description, base_model=base_model,
        license=str(card["license"]) if card.get("license") else None, tags=tags,
        datasets=_as_list(card.get("datasets")), private=bool(getattr(info, "private", False)),
        gated=getattr(info, "gated", False) or False, adapter=adapter,
    )
