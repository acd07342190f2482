"""A Hugging Face model repo -> a local base folder: config, tokenizer, chat template and safetensors only.

The revision (branch, tag or sha; default branch when none) is resolved to a commit sha first and every
file is read at that sha, so a push in between cannot mix two commits. ``config.json`` is fetched and
checked (``validate``) before any weights are downloaded: a repo that is not a causal LM costs one small
download. Pickle weights (``*.bin``, ``*.pt``) are never downloaded; a repo without safetensors is refused.
Files land in a staging folder and are renamed into ``root/<org>--<name>/<sha>/`` when complete; a later
registration of the same commit reuses that folder without downloading anything.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core.errors import InvalidInputError
from hub.hf_sync.errors import CallContext
from hub.hf_sync.refs import parse_repo_ref
from hub.hf_sync.retry import DEFAULT_POLICY, RetryPolicy, call_hub

if TYPE_CHECKING:
    from huggingface_hub import HfApi

log = logging.getLogger(__name__)

#: the files a base needs, at the repo's top level (subfolders are never downloaded)
BASE_PATTERNS = (
    "config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
#: marks a finished download inside its folder (repo, revision asked for, sha)
DONE_NAME = "loom-source.json"


@dataclass(frozen=True)
class DownloadedBase:
    """A base model repo downloaded at one commit.

    Attributes:
        repo_id: ``org/name``. revision: what was asked for (None: the default branch).
        sha: the commit every file was read at. folder: the local folder. config: its config.json.
        reused: True when the folder of that commit already existed (nothing was downloaded).
    """

    repo_id: str
    revision: str | None
    sha: str
    folder: Path
    config: dict[str, Any]
    reused: bool = False


def _check_files(where: str, names: set[str]) -> None:
    top = {n for n in names if "/" not in n}
    if "config.json" not in top:
        raise InvalidInputError(f"{where} has no config.json: not a transformers model repository", field="weights")
    if not any(n.endswith(".safetensors") for n in top):
        pickles = sorted(n for n in top if n.endswith(_PICKLE_SUFFIXES))
        if pickles:
            raise InvalidInputError(f"{where} has only pickle weights ({', '.join(pickles)}); Loom downloads "
                                    "safetensors only and never opens pickles", field="weights")
        raise InvalidInputError(f"{where} has no safetensors weights at its top level", field="weights")
    if not top & set(TOKENIZER_FILES):
        raise InvalidInputError(f"{where} has no tokenizer (none of {', '.join(TOKENIZER_FILES)})", field="weights")


def download_base(
    api: HfApi,
    ref: str,
    root: str | os.PathLike[str],
    *,
    validate: Callable[[dict[str, Any]], Any] | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> DownloadedBase:
    """Download the base model ``org/name[@revision]`` into ``root`` (once per commit).

    Args:
        api: a configured ``HfApi`` (endpoint, token).
        ref: ``org/name`` or ``org/name@revision`` (``hf:`` prefix allowed).
        validate: called with the parsed config.json before the weights are downloaded; raises to refuse.

    Raises:
        InvalidInputError: a malformed id, no config.json / safetensors / tokenizer, or ``validate`` refused.
        NotFoundError: unknown repo or revision. AuthenticationError / PermissionDeniedError: private or gated.
        UpstreamError: the Hub could not be reached, or failed past the retries (nothing is left behind).
    """
    repo_id, revision = parse_repo_ref(ref)
    authed = bool(getattr(api, "token", None))
    info = call_hub(api.model_info, repo_id, revision=revision, ctx=CallContext("reading", repo_id, revision, authed),
                    policy=policy)
    sha = str(info.sha)
    where = f"{repo_id}@{sha[:12]}"
    dest = Path(root) / repo_id.replace("/", "--") / sha
    if (dest / DONE_NAME).is_file():
        config = json.loads((dest / "config.json").read_text())
        if validate is not None:
            validate(config)
        return DownloadedBase(repo_id, revision, sha, dest, config, reused=True)
    _check_files(where, {s.rfilename for s in info.siblings or []})
    staging = dest.parent / f".{sha}.partial-{uuid.uuid4().hex[:12]}"
    ctx = CallContext("downloading", repo_id, sha, authed)
    try:
        files, cache = staging / "files", staging / "cache"
        files.mkdir(parents=True)
        cfg_path = call_hub(api.hf_hub_download, repo_id, "config.json", revision=sha, local_dir=files,
                            cache_dir=cache, ctx=ctx, policy=policy)
        try:
            config = json.loads(Path(cfg_path).read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidInputError(f"{where}: config.json is not valid JSON: {e}", field="weights") from None
        if not isinstance(config, dict):
            raise InvalidInputError(f"{where}: config.json is not a JSON object", field="weights")
        if validate is not None:
            validate(config)
        call_hub(api.snapshot_download, repo_id, revision=sha, local_dir=files, cache_dir=cache,
                 allow_patterns=list(BASE_PATTERNS), ignore_patterns=["*/*"], ctx=ctx, policy=policy)
        shutil.rmtree(files / ".cache", ignore_errors=True)  # huggingface_hub's local_dir bookkeeping
        (files / DONE_NAME).write_text(json.dumps({"repo_id": repo_id, "revision": revision, "sha": sha}) + "\n")
        try:
            os.replace(files, dest)
        except OSError:  # the same commit finished meanwhile in another process: keep theirs
            if not (dest / DONE_NAME).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("downloaded %s into %s", where, dest)
    return DownloadedBase(repo_id, revision, sha, dest, config)
