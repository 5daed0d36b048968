"""Errors raised by the rules layer."""

from __future__ import annotations

from adapters.errors import LinliError


class RuleError(LinliError):
    """A rule pack is invalid; names the file, the rule and the field at fault."""

    def __init__(self, message: str, *, file: str, rule: str = "", field: str = "") -> None:
        where = file + (f" rule {rule!r}" if rule else "") + (f" field {field!r}" if field else "")
        super().__init__(f"{where}: {message}")
        self.file = file
        self.rule = rule
        self.field = field
        self.message = message
