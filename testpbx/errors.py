"""One clear message with its fix, instead of a traceback."""

from __future__ import annotations


class SetupError(RuntimeError):
    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}\n  fix: {fix}")
        self.problem = problem
        self.fix = fix
