"""Errors of run semantics. They refuse an append inside its transaction, so they are StoreErrors.

RefusedByProjection (eventstore)
├── IllegalTransition   the status change is not in the transition table (HTTP 409)
├── LaneBusy            another run of the lane is active (HTTP 409)
├── ResumeRefused       the run cannot resume: cancelled, final checkpoint, none (HTTP 409)
└── RunTerminal         the run has ended and accepts no more work (HTTP 409)
"""

from __future__ import annotations

from typing import Any

from eventstore import RefusedByProjection

__all__ = ["IllegalTransition", "LaneBusy", "ResumeRefused", "RunTerminal"]


class IllegalTransition(RefusedByProjection):
    code = "illegal_transition"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, code=self.code, **details)


class LaneBusy(RefusedByProjection):
    code = "lane_busy"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, code=self.code, **details)


class ResumeRefused(RefusedByProjection):
    code = "resume_refused"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, code=self.code, **details)


class RunTerminal(RefusedByProjection):
    code = "run_terminal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, code=self.code, **details)
