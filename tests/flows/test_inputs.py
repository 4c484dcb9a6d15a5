"""Inputs typed in a form or JSON are checked against the flow's input types before a run is created."""

import pytest

from django.core.exceptions import ValidationError

from flows.services import coerce_input, coerce_inputs


def test_it_converts_each_promptflow_type():
    assert coerce_input("n", {"type": "int"}, "42") == 42
    assert coerce_input("x", {"type": "double"}, "0.5") == 0.5
    assert coerce_input("b", {"type": "bool"}, "true") is True
    assert coerce_input("l", {"type": "list"}, "[1, 2]") == [1, 2]
    assert coerce_input("o", {"type": "object"}, '{"a": 1}') == {"a": 1}
    assert coerce_input("s", {"type": "string"}, "text") == "text"


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        ({"type": "int"}, "abc", "Input 'field' must be a whole number."),
        ({"type": "double"}, "x", "Input 'field' must be a number."),
        ({"type": "bool"}, "maybe", "Input 'field' must be true or false."),
        ({"type": "list"}, '{"a": 1}', "Input 'field' must be JSON list."),
        ({"type": "object"}, "[", "Input 'field' must be JSON object."),
        ({"type": "int"}, None, "Input 'field' is required."),
    ],
)
def test_it_names_the_input_in_each_error(spec, value, message):
    with pytest.raises(ValidationError) as caught:
        coerce_input("field", spec, value)
    assert caught.value.message_dict == {"field": [message]}


def test_it_uses_the_default_when_a_value_is_missing():
    assert coerce_input("n", {"type": "int", "default": 3}, None) == 3


def test_it_refuses_an_input_the_flow_does_not_have():
    class Version:
        inputs = {"a": {"type": "string"}}

    with pytest.raises(ValidationError) as caught:
        coerce_inputs(Version(), {"b": "x"})
    assert caught.value.message_dict == {"b": ["The flow has no input named 'b'."]}
