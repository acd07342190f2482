"""The files of a base model whose weights this hub holds, for download (``loom base pull``, the base page).

Only bases whose weights folder lies inside the hub's data directory are offered (what Loom downloaded,
converted or built itself: ``weights/hf``, ``weights/gguf``, the testbed zoo), and of those only the files a
``from_pretrained`` folder needs: configs, tokenizer files, the chat template and safetensors weights (never
pickles, never anything else the folder may hold, never through a link out of it).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core.errors import NotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from hub.services.base_models import BaseModelService

#: the file names of a loadable folder that a download offers
SERVED_PATTERNS = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "tokenizer.model",
                   "chat_template.jinja", "chat_template.json", "*.safetensors", "model.safetensors.index.json")


class BaseFiles:
    """List and open the downloadable files of registered bases.

    Args:
        base_models: the registered bases. root: the hub's data directory (only folders inside it are offered).
    """

    def __init__(self, base_models: BaseModelService, root: Path) -> None:
        self.base_models, self.root = base_models, root.resolve()

    def folder(self, model_id: str, revision: str | None = None) -> Path:
        """The weights folder of a base the hub holds.

        Raises:
            NotFoundError: no such base, or its weights are not held by this hub (a folder elsewhere, or none).
        """
        row = self.base_models.get(model_id, revision)
        folder = Path(row.weights).resolve() if row.weights else None
        if folder is None or not folder.is_dir() or not folder.is_relative_to(self.root):
            raise NotFoundError(f"this hub does not hold the weights of base model {model_id}; get them where "
                                f"they were registered from", model_id=model_id)
        return folder

    def list(self, model_id: str, revision: str | None = None) -> list[dict[str, Any]]:
        """``[{name, size}]`` of the files a download of the base holds (sorted by name)."""
        folder = self.folder(model_id, revision)
        return [{"name": p.name, "size": p.stat().st_size} for p in sorted(folder.iterdir())
                if self._served(folder, p)]

    def path(self, model_id: str, filename: str, revision: str | None = None) -> Path:
        """The file ``filename`` of the base's download.

        Raises:
            NotFoundError: no such base or file, or a file a download does not offer.
        """
        folder = self.folder(model_id, revision)
        p = folder / filename
        if "/" in filename or "\\" in filename or not self._served(folder, p):
            raise NotFoundError(f"base model {model_id} has no downloadable file {filename!r}", filename=filename)
        return p

    @staticmethod
    def _served(folder: Path, p: Path) -> bool:
        if not any(fnmatch.fnmatch(p.name, pat) for pat in SERVED_PATTERNS):
            return False
        return p.is_file() and p.resolve().parent == folder
