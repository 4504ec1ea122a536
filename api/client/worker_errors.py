"""What the worker SDK raises into a handler (docs/workers.md, "What a handler may meet")."""

from __future__ import annotations

from typing import Any

__all__ = [
    "HumanInputPending",
    "RunCancelled",
    "RunLost",
    "ToolCallFailed",
    "ToolCallUnfinished",
]


class RunCancelled(Exception):
    """A cancel was requested: raised by the SDK call that learns of it and every one after.

    A handler may catch it to tidy up; the run ends ``cancelled`` whatever it does next."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} was cancelled")
        self.run_id = run_id


class RunLost(Exception):
    """The run is no longer this worker's (it ended elsewhere, e.g. timed out by the server, or
    the worker gave it up while draining): the worker records nothing more for it."""

    def __init__(self, run_id: str, status: str | None) -> None:
        super().__init__(f"run {run_id} is no longer held by this worker (status {status})")
        self.run_id = run_id
        self.status = status


class ToolCallUnfinished(Exception):
    """A tool call of a previous attempt started and never finished: ``fn`` may or may not have
    had its effect. Call ``ctx.tool`` again with ``retry=True`` to run it anyway."""

    def __init__(self, name: str, call_id: str, arguments: Any) -> None:
        super().__init__(
            f"tool call {call_id} ({name}) started on a previous attempt and never "
            "finished; pass retry=True to call it again"
        )
        self.name = name
        self.call_id = call_id
        self.arguments = arguments


class ToolCallFailed(Exception):
    """A tool call ended in error: the first time (from ``fn``'s exception, chained) and, on a
    resumed run, when the recorded result is an error, so both attempts see one type."""

    def __init__(self, name: str, call_id: str, error: str | None) -> None:
        super().__init__(f"tool call {call_id} ({name}) failed: {error}")
        self.name = name
        self.call_id = call_id
        self.error = error


class HumanInputPending(BaseException):
    """Unwinds a handler that asked a human: the run waits (``waiting_on_human``) with no
    worker, and the handler is called again, from its latest checkpoint, once answered.

    A ``BaseException`` so that a handler's ``except Exception`` does not swallow it."""

    def __init__(self, run_id: str, question_id: str) -> None:
        super().__init__(f"run {run_id} waits for an answer to {question_id}")
        self.run_id = run_id
        self.question_id = question_id
