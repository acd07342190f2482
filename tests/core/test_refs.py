"""hub.core.refs: the one parser of ``namespace/name[@version]``."""

from __future__ import annotations

import pytest

from hub.core.errors import InvalidInputError
from hub.core.refs import AdapterRef, parse_name


@pytest.mark.parametrize("text, ns, name, version", [
    ("zoo/upper", "zoo", "upper", None),
    ("zoo/upper@3", "zoo", "upper", 3),
    ("  a.b/c-d_e@12 ", "a.b", "c-d_e", 12),
])
def test_parses_valid_refs(text, ns, name, version):
    r = AdapterRef.parse(text)
    assert (r.namespace, r.name, r.version) == (ns, name, version)
    assert str(r) == text.strip()
    assert r.full_name == f"{ns}/{name}"


@pytest.mark.parametrize("text", ["zoo/upper@0", "zoo/upper@-1", "zoo/upper@", "zoo/upper@x", "zoo/upper@1@2",
                                  "upper", "a/b/c", "Zoo/upper", "zoo/../x", "zoo/up per", "", "zoo/upper@²"])
def test_refuses_malformed_refs_naming_the_field(text):
    with pytest.raises(InvalidInputError) as e:
        AdapterRef.parse(text, field="sources")
    assert e.value.details["field"] in ("sources", "namespace", "name")
    assert AdapterRef.try_parse(text) is None


def test_at_pins_a_version():
    assert str(AdapterRef.parse("zoo/upper").at(2)) == "zoo/upper@2"


def test_parse_name_checks_both_parts():
    assert parse_name("alice/sql") == ("alice", "sql")
    with pytest.raises(InvalidInputError):
        parse_name("alice/-sql")
