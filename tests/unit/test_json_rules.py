"""The JSON rule every client document follows: depth and valid Unicode, checked iteratively."""

from __future__ import annotations

import json

import pytest

from engine.errors import InvalidJsonError, JsonRuleError
from engine.json_rules import MAX_DEPTH, check, loads


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_a_document_at_the_depth_limit_passes_and_one_level_more_does_not() -> None:
    assert loads(nested(MAX_DEPTH)) == json.loads(nested(MAX_DEPTH))
    with pytest.raises(JsonRuleError) as refused:
        loads(nested(MAX_DEPTH + 1))
    assert refused.value.location == (0,) * MAX_DEPTH
    assert refused.value.reason == f"nested deeper than {MAX_DEPTH} levels of objects and arrays"


def test_a_document_too_deep_for_the_parser_is_the_rule_s_error_not_a_recursion_error() -> None:
    with pytest.raises(JsonRuleError, match="nested deeper than"):
        loads(nested(100_000))


@pytest.mark.parametrize(
    ("text", "location"),
    [
        ('{"a": ["ok", "x\\ud800"]}', ("a", 1)),
        ('{"a": {"\\udfffk": 1}}', ("a", "\\udfffk")),  # the location itself is printable
        ('"\\udc00\\ud800"', ()),  # the wrong order is not a pair
    ],
)
def test_lone_surrogates_are_refused_where_they_are(text: str, location: tuple[object]) -> None:
    with pytest.raises(JsonRuleError) as refused:
        loads(text)
    assert refused.value.location == location
    str(refused.value).encode()  # the message can be sent as UTF-8


def test_surrogate_pairs_and_other_unicode_pass() -> None:
    assert loads('{"emoji": "\\ud83d\\ude00", "é": "中"}') == {"emoji": "😀", "é": "中"}


def test_text_that_is_not_json_is_invalid_json() -> None:
    with pytest.raises(InvalidJsonError):
        loads("{")


def test_check_prefixes_the_location_with_the_root() -> None:
    with pytest.raises(JsonRuleError) as refused:
        check({"k": "\ud800"}, ("input",))
    assert str(refused.value) == "input.k: the string is not valid Unicode (a lone surrogate)"
