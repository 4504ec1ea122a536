"""Run semantics: the lifecycle, the fold, read models kept in the append's transaction,
commands, queries and rebuild."""

from __future__ import annotations

from .archive import ArchiveReport, Hold, archive, cut_for_age, parse_age, plan_cut
from .commands import Claim, RunCommands, conversation_run, new_run_id
from .errors import (
    DuplicateQuestion,
    IllegalTransition,
    LaneBusy,
    NotWaitingOnHuman,
    QuestionMismatch,
    ResumeRefused,
    RunTerminal,
)
from .lifecycle import (
    ACTIVE,
    CLAIMABLE,
    TERMINAL,
    TRANSITIONS,
    RunStatus,
    StopReason,
    allowed_targets,
    check_transition,
    resume_available,
)
from .queries import DURATION_BOUNDS_MS, RunFilter, RunPage, RunQueries, RunStats, Usage
from .readmodel import FoldWatcher, RunProjection
from .rebuild import RebuildReport, check, rebuild
from .state import RunState, evolve, fold
from .views import seen_at

__all__ = [
    "ACTIVE",
    "CLAIMABLE",
    "DURATION_BOUNDS_MS",
    "TERMINAL",
    "TRANSITIONS",
    "ArchiveReport",
    "Claim",
    "DuplicateQuestion",
    "FoldWatcher",
    "Hold",
    "IllegalTransition",
    "LaneBusy",
    "NotWaitingOnHuman",
    "QuestionMismatch",
    "RebuildReport",
    "ResumeRefused",
    "RunCommands",
    "RunFilter",
    "RunPage",
    "RunProjection",
    "RunQueries",
    "RunState",
    "RunStats",
    "RunStatus",
    "RunTerminal",
    "StopReason",
    "Usage",
    "allowed_targets",
    "archive",
    "check",
    "check_transition",
    "conversation_run",
    "cut_for_age",
    "evolve",
    "fold",
    "new_run_id",
    "parse_age",
    "plan_cut",
    "rebuild",
    "resume_available",
    "seen_at",
]
