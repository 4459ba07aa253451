"""The size a lean step counts for a value is its compact JSON's, however it is measured."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.deltas import size_of, stored_size

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


def _encoded(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))


@given(VALUES)
def test_a_value_measures_as_its_json(value: Any) -> None:
    # Given any JSON value (ints and plain strings take a path that does not encode them)
    # Then its size is the length of its compact JSON
    assert size_of(value) == _encoded(value)


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_an_ascii_string_with_quotes_escapes_or_controls_measures_as_its_json(text: str) -> None:
    assert size_of(text) == _encoded(text)
    assert size_of(f'"{text}\\') == _encoded(f'"{text}\\')


def test_a_delta_without_keys_counts_them_as_an_empty_list() -> None:
    # Given a delta that sets one int and lists no unchanged key
    delta = {"set": {"x": 12}}
    # Then it counts "[]", the key and the value, as it did when everything was encoded
    assert stored_size(delta) == len("[]") + len("x") + len("12")
    assert stored_size({**delta, "keys": []}) == stored_size(delta)
