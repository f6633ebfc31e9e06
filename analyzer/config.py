"""The effective settings of one run, without libcst (a cached run never needs the analysis)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from .rules import select_codes

if TYPE_CHECKING:
    from .engine import Settings


@dataclass
class Config:
    """Effective settings for one run (CLI flags merged over ``[tool.tracesafe]``)."""

    target: str = "trace"
    select: Optional[list[str]] = None
    ignore: Optional[list[str]] = None
    entry_points: tuple[str, ...] = ("forward",)
    per_file_ignores: dict[str, list[str]] = field(default_factory=dict)
    form: str = "flag"  # the rewrite form whose availability the `fix` field reports

    def codes(self) -> set[str]:
        return select_codes(self.select, self.ignore)

    def settings(self) -> Settings:
        from .engine import Settings  # the analysis (and libcst) load only when a file is analysed

        return Settings(target=self.target, entry_points=tuple(self.entry_points))

    def fingerprint(self) -> str:
        return repr(
            (
                self.target,
                self.form,
                sorted(self.codes()),
                tuple(self.entry_points),
                sorted((k, tuple(v)) for k, v in self.per_file_ignores.items()),
            )
        )
