"""domain.strictjson: the one parser that decides what JSON may enter a store."""

import json

import pytest

from eventodb_cli.domain import strictjson

REFUSED = [
    '{"a":NaN}', '{"a":Infinity}', '[-Infinity]', '{"a":1e999}', '[-1e400]',
    '"\\ud800"', '{"\\udc00":1}', '["ok","\\udfff"]', '1' * 5000,
]
ACCEPTED = ['{"a":1.5}', '"\\ud83d\\ude00"', '[1e308,-1e308,0,null,true]', '{"s":"[/]"}', '1' * 4000]


@pytest.mark.parametrize("text", REFUSED)
def test_refused(text):
    with pytest.raises(strictjson.StrictJSONError):
        strictjson.loads(text)
    with pytest.raises(ValueError):
        strictjson.raw_decode(text)


@pytest.mark.parametrize("text", ACCEPTED)
def test_accepted_equals_json(text):
    assert strictjson.loads(text) == json.loads(text)
    assert strictjson.loads(text.encode()) == json.loads(text)


def test_malformed_is_json_decode_error():
    with pytest.raises(json.JSONDecodeError) as e:
        strictjson.loads('{"a":')
    assert "line 1 column 6" in strictjson.error_text(e.value)


def test_check_value():
    strictjson.check_value({"a": [1, "x", {"b": 2.0}]})
    for bad in ({"a": float("nan")}, [float("inf")], {"\ud800": 1}, ["\udc00"]):
        with pytest.raises(strictjson.StrictJSONError):
            strictjson.check_value(bad)


def test_nesting_deeper_than_python_parses_is_a_strict_error():
    """A RecursionError inside the decoder is a one-line ValueError like any bad JSON."""
    deep = "[" * 5000 + "]" * 5000
    for parse in (strictjson.loads, lambda t: strictjson.raw_decode(t, 0)):
        with pytest.raises(strictjson.StrictJSONError, match="nested too deeply"):
            parse(deep)
    assert strictjson.loads("[" * 500 + "]" * 500)  # deep but parseable
