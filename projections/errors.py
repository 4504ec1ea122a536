"""Errors of run semantics. They refuse an append inside its transaction, so they are StoreErrors.

RefusedByProjection (eventstore)
├── IllegalTransition   the status change is not in the transition table (HTTP 409)
├── LaneBusy            another run of the lane is active (HTTP 409)
├── ResumeRefused       the run cannot resume: cancelled, final checkpoint, none (HTTP 409)
├── RunTerminal         the run has ended and accepts no more work (HTTP 409)
├── DuplicateQuestion   a question id asked again with another question (HTTP 409)
├── NotWaitingOnHuman   an answer to a run that is not waiting on a human (HTTP 409)
└── QuestionMismatch    an answer to a question that is not the run's open one (HTTP 409)
"""

from __future__ import annotations

from typing import Any

from eventstore import RefusedByProjection

__all__ = [
    "DuplicateQuestion",
    "IllegalTransition",
    "LaneBusy",
    "NotWaitingOnHuman",
    "QuestionMismatch",
    "ResumeRefused",
    "RunTerminal",
]


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


class DuplicateQuestion(RefusedByProjection):
    """A question id asked again with a different question: questions are keyed like tool calls."""

    code = "duplicate_question"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, code=self.code, **details)


class NotWaitingOnHuman(RefusedByProjection):
    code = "not_waiting_on_human"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, code=self.code, **details)


class QuestionMismatch(RefusedByProjection):
    """An answer naming a question other than the run's open one (a stale answer)."""

    code = "question_mismatch"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, code=self.code, **details)
