"""The condition language: parsing, semantics and safety (no names beyond the allowed ones)."""

from __future__ import annotations

import pytest

from adapters.events import DeviceKind, Event, EventKind
from rules.expr import ExprError, compile_expr
from rules.subject import Subject

EVENT = Event("d1", EventKind.BATTERY, 1.0, "test", 42, {"volts": 2.5, "press": "long", "low": True})
SUBJECT = Subject(
    "d1",
    DeviceKind.DOOR_SENSOR,
    "110105001001001",
    "110105001001",
    {"resident.living_alone": True, "resident.age": 85, "place.kind": "entrance"},
)


def ev(source: str, event: Event | None = EVENT) -> object:
    return compile_expr(source).evaluate(event, SUBJECT)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("value == 42", True),
        ("value != 42", False),
        ("value > 40 and value <= 42", True),
        ("value < 10 or attrs.volts < 2.6", True),
        ("not value >= 100", True),
        ("not (value == 42)", False),
        ("kind == 'battery'", True),
        ('kind in ["battery", "heartbeat"]', True),
        ("kind not in ['battery']", False),
        ('attrs.press == "long"', True),
        ("attrs.low == true", True),
        ("attrs.missing == null", True),
        ("attrs.missing > 1", False),
        ("subject.resident.living_alone", True),
        ("subject.resident.age >= 80", True),
        ("subject.place.kind == 'entrance'", True),
        ("subject.kind == 'door_sensor'", True),
        ("subject.grid == '110105001001001'", True),
        ("subject.community in ['110105001001']", True),
        ("subject.id == 'd1'", True),
        ("subject.nothing == null", True),
        ("value == -3", False),
        ("-1.5e2 < value", True),
        ("'ent' in subject.place.kind", True),
        ("1 in [1, 2, 3]", True),
        ("[] == []", True),
        ("true and (false or not false)", True),
        ("value == true", False),  # booleans never equal numbers
        ("attrs.low == 1", False),
        ("'a' < 'b'", True),
        ("'a' < 1", False),  # mixed types: ordering is false, not an error
        ("null < 1", False),
        ("'it\\'s' == \"it's\"", True),
    ],
)
def test_semantics(source: str, expected: bool) -> None:
    assert bool(ev(source)) is expected


def test_without_an_event_event_names_are_null() -> None:
    assert ev("value == null and kind == null and attrs.volts == null", None) is True
    assert ev("subject.resident.living_alone", None) is True


def test_and_or_short_circuit_and_precedence() -> None:
    # and binds tighter than or
    assert ev("true or false and false") is True
    assert ev("(true or false) and false") is False
    assert ev("not true or true") is True


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os')",
        "__import__",
        "value.__class__",
        "attrs.__dict__",
        "subject.__class__.__mro__",
        "subject._private",
        "attrs._x",
        "os.system('x')",
        "open('f')",
        "value()",
        "attrs",
        "attrs.a.b",
        "subject",
        "event.value",
        "True",
        "None",
        "lambda: 1",
        "value ==",
        "== 1",
        "(value == 1",
        "value == 1)",
        "[1, 2",
        "value == 1 == 1",
        "value = 1",
        "value & 1",
        "'unterminated",
        "'bad \\q escape'",
        "",
        "   ",
        "value == 1 value",
        "not",
        "1 < 2 < 3",
        "x" * 3000,
    ],
)
def test_invalid_expressions_are_errors(source: str) -> None:
    with pytest.raises(ExprError):
        compile_expr(source)


def test_error_names_position_and_name() -> None:
    with pytest.raises(ExprError, match=r"unknown name '__import__' at 1"):
        compile_expr("__import__('os')")
    with pytest.raises(ExprError, match=r"at 10"):
        compile_expr("value == ")


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(ExprError, match="nested too deeply"):
        compile_expr("(" * 200 + "1" + ")" * 200)
    with pytest.raises(ExprError, match="nested too deeply"):
        compile_expr("not " * 200 + "true")


def test_non_string_is_an_error() -> None:
    with pytest.raises(ExprError):
        compile_expr(42)


def test_source_is_kept() -> None:
    assert compile_expr("value > 1").source == "value > 1"
