"""Names and references of registry artifacts: ``namespace/name`` and ``namespace/name@version``.

The one parser of both, used by the services, the API, the CLI and the client alike.

Name parts match ``^[a-z0-9][a-z0-9._-]{0,63}$`` (lowercase ASCII letters, digits, ``.``, ``_``, ``-``;
starting with a letter or digit; at most 64 characters; no ``..``). Names never become filesystem
paths (blobs are keyed by sha256), but the rule keeps them safe in URLs, CLI arguments and folder
names on the client side anyway. Versions are numbered from 1; a reference without ``@version``
means the latest version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hub.core.errors import InvalidInputError

NAME_PART_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_REF_RE = re.compile(r"^(?P<name>[^@\s]+?)(?:@(?P<version>[^@\s]*))?$")


def check_name_part(part: str, what: str = "name") -> str:
    """Validate one part of a name (a namespace, a name, or a user name); returns it.

    Raises:
        InvalidInputError: naming ``what`` and the value.
    """
    if not isinstance(part, str) or not NAME_PART_RE.match(part) or ".." in part:
        raise InvalidInputError(
            f"{what} {part!r} is not allowed: use 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'",
            field=what,
            value=part,
        )
    return part


def parse_name(full: str, field: str = "name") -> tuple[str, str]:
    """Split and validate ``"namespace/name"``.

    Raises:
        InvalidInputError: not two valid parts separated by one ``/`` (on ``field``).
    """
    if not isinstance(full, str) or full.count("/") != 1:
        raise InvalidInputError(f"{field} must be 'namespace/name', got {full!r}", field=field, value=full)
    ns, name = full.split("/")
    return check_name_part(ns, "namespace"), check_name_part(name, "name")


@dataclass(frozen=True)
class AdapterRef:
    """``namespace/name`` with an optional version (None = the latest)."""

    namespace: str
    name: str
    version: int | None = None

    @property
    def full_name(self) -> str:
        """``namespace/name``, without the version."""
        return f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        return self.full_name if self.version is None else f"{self.full_name}@{self.version}"

    def at(self, version: int) -> AdapterRef:
        """The same artifact pinned to ``version``."""
        return AdapterRef(self.namespace, self.name, version)

    @classmethod
    def parse(cls, text: str, field: str = "name") -> AdapterRef:
        """``"ns/name"`` or ``"ns/name@3"`` -> an :class:`AdapterRef`.

        Raises:
            InvalidInputError: a malformed reference, an invalid name, or a version that is not a
                whole number >= 1; the error names ``field``.
        """
        m = _REF_RE.match(text.strip()) if isinstance(text, str) else None
        if not m:
            raise InvalidInputError(f"{field} must be 'namespace/name[@version]', got {text!r}", field=field,
                                    value=text)
        raw = m["version"]
        version: int | None = None
        if raw is not None:
            if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) < 1:  # fits int64
                raise InvalidInputError(f"{field}: version must be a whole number >= 1, got {raw!r} in {text!r}",
                                        field=field, value=text)
            version = int(raw)
        ns, nm = parse_name(m["name"], field)
        return cls(ns, nm, version)

    @classmethod
    def try_parse(cls, text: str) -> AdapterRef | None:
        """Like :meth:`parse`, but None for anything that is not a valid reference."""
        try:
            return cls.parse(text)
        except InvalidInputError:
            return None
