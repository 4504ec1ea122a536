"""A known tree of runs for the exporter's tests: a parent with a tool call, a step, a question
to a person, a checkpoint, a journal and a child run, which then fails; its child completes."""

from __future__ import annotations

from dataclasses import dataclass

from eventstore import EventType, NewEvent, RunStatus
from projections import RunCommands

ORG = "org-otel"
OTHER_ORG = "org-other"


@dataclass(frozen=True)
class KnownRun:
    parent: str
    child: str
    conversation: str


async def known_run(commands: RunCommands, *, organization: str = ORG) -> KnownRun:
    parent = await commands.create(organization, "planner", message="plan a trip")
    pid = parent.run_id
    await commands.change_status(organization, pid, RunStatus.RUNNING)
    await commands.append(
        organization,
        pid,
        [
            NewEvent(
                EventType.STEP_COMPLETED,
                {"model": "gpt-x", "prompt_tokens": 12, "completion_tokens": 5, "duration_ms": 250},
            ),
            NewEvent(
                EventType.TOOL_STARTED,
                {"tool_call_id": "call-1", "name": "search", "arguments": {"q": "secret-argument"}},
            ),
        ],
    )
    await commands.record_tool_result(
        organization,
        pid,
        {"tool_call_id": "call-1", "name": "search", "result": {"hits": "secret-result"}},
    )
    child = await commands.create(organization, "booker", parent_run_id=pid)
    await commands.append(
        organization, pid, [NewEvent(EventType.CHILD_RUN_STARTED, {"child_run_id": child.run_id})]
    )
    await commands.change_status(organization, child.run_id, RunStatus.RUNNING)
    await commands.append(
        organization,
        child.run_id,
        [
            NewEvent(
                EventType.STEP_COMPLETED,
                {"model": "gpt-y", "prompt_tokens": 3, "completion_tokens": 2},
            )
        ],
    )
    await commands.change_status(organization, child.run_id, stop_reason="end_turn")
    await commands.append(
        organization,
        pid,
        [
            NewEvent(
                EventType.CHILD_RUN_FINISHED, {"child_run_id": child.run_id, "status": "completed"}
            ),
            NewEvent(
                EventType.CHECKPOINT_CREATED,
                {"checkpoint_id": "cp-1", "kind": "tool_result", "state": {"k": "v"}},
            ),
            NewEvent(EventType.JOURNAL_UPDATED, {"objective": "secret-objective"}),
            NewEvent(
                EventType.HUMAN_INPUT_REQUESTED,
                {"question_id": "q-1", "question": "secret-question?"},
            ),
            NewEvent(EventType.RUN_STATUS_CHANGED, {"to": "waiting_on_human"}),
        ],
    )
    await commands.answer(organization, pid, "yes", question_id="q-1")
    await commands.change_status(organization, pid, RunStatus.RUNNING)
    await commands.change_status(organization, pid, stop_reason="error", detail="secret-detail")
    return KnownRun(pid, child.run_id, parent.conversation_id)
