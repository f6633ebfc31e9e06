"""The finding type shared by check, fix, export and every reporter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .rules import RULES


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    code: str
    message: str
    function: str
    fix: Optional[dict[str, Any]] = field(default=None, compare=False)  # {"form", "applicability"} or None

    @property
    def name(self) -> str:
        return RULES[self.code].name

    @property
    def severity(self) -> str:
        return RULES[self.code].severity

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "code": self.code,
            "name": self.name,
            "severity": self.severity,
            "message": self.message,
            "function": self.function,
            "fix": dict(self.fix) if self.fix is not None else None,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Finding":
        return cls(
            d["path"],
            d["line"],
            d["column"],
            d["end_line"],
            d["end_column"],
            d["code"],
            d["message"],
            d["function"],
            d.get("fix"),
        )

    def sort_key(self) -> tuple[str, int, int, str, int, int]:
        return (self.path, self.line, self.column, self.code, self.end_line, self.end_column)
