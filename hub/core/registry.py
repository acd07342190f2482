"""A tiny typed name -> object registry used for merge methods and router presets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from hub.core.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object with the facts the docs and the API show about it."""

    name: str
    obj: T
    paper: str | None = None
    version: str = "1"
    summary: str = ""
    extra: dict[str, object] = field(default_factory=dict)


class Registry(Generic[T]):
    """Register objects by snake_case name; ``get`` on an unknown name lists what exists."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self,
        name: str,
        *,
        paper: str | None = None,
        version: str = "1",
        summary: str = "",
        **extra: object,
    ) -> Callable[[T], T]:
        """Decorator: ``@METHODS.register("ties", paper="https://arxiv.org/abs/2306.01708")``.

        Raises:
            ValueError: the name is already registered or is not snake_case.
        """

        if not name.replace("_", "").isalnum() or name.lower() != name:
            raise ValueError(f"{self.kind} name must be snake_case, got {name!r}")

        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            doc = (getattr(obj, "__doc__", None) or "").strip()
            self._entries[name] = Entry(
                name=name,
                obj=obj,
                paper=paper,
                version=version,
                summary=summary or (doc.splitlines()[0] if doc else ""),
                extra=dict(extra),
            )
            return obj

        return deco

    def entry(self, name: str) -> Entry[T]:
        """The entry for ``name``.

        Raises:
            UnknownNameError: no such name; the message lists the known ones.
        """
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known: {known}", name=name, known=sorted(self._entries)
            ) from None

    def get(self, name: str) -> T:
        """The object registered as ``name`` (see :meth:`entry`)."""
        return self.entry(name).obj

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
