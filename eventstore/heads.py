"""Signed heads in the log: how the leader appends them, and what a verifier checks of them.

A ``chain_head`` event is appended to the system run (``SYSTEM_RUN`` of ``SYSTEM_ORGANIZATION``)
inside the writer's transaction, so the head it signs is the event just before it: its
``head_id`` is its own id - 1 and its ``head_hash`` its own ``prev_hash``. A verifier checks that
link and the signature; a rehashed chain changes every ``prev_hash``, so each signed head the
attacker left in the log no longer verifies, and a head kept outside the log (``GET
/v1/audit/head``) catches a truncated tail and a rehash that removed the heads too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .appending import WriteContext, prepare_append
from .chain_versions import ChainVersions
from .payloads import EventType
from .records import AgentEvent, NewEvent, decode_json
from .signing import HeadSigner, PublicKeys, SignedHead
from .system import SYSTEM_ORGANIZATION

__all__ = ["SYSTEM_RUN", "AppendSignedHead", "HeadChecks", "HeadProblem"]

SYSTEM_RUN = "chain-heads"
"""The run (and conversation) of ``SYSTEM_ORGANIZATION`` that holds every signed head."""
CHAIN_HEAD = EventType.CHAIN_HEAD.value
_OPENING = (
    NewEvent(EventType.RUN_CREATED, {"agent_id": "runtrack", "metadata": {"purpose": "heads"}}),
    NewEvent(EventType.RUN_STATUS_CHANGED, {"from": "queued", "to": "running"}),
    NewEvent(EventType.RUN_STATUS_CHANGED, {"from": "running", "stop_reason": "end_turn"}),
)
"""The system run ends as it starts: no worker claims it, the reconciler never times it out, and
``chain_head`` events (passive in the fold) go on being appended to it."""


@dataclass
class AppendSignedHead:
    """The write unit: sign the log's current head and append the signature right after it.

    Nothing is appended when the log's last event is already the system run's own (nothing was
    appended since the last head), so an idle server does not grow the log.
    """

    signer: HeadSigner

    def __call__(self, context: WriteContext) -> AgentEvent | None:
        if context.run_sequence(SYSTEM_RUN) == 0:
            context.append(
                prepare_append(
                    SYSTEM_ORGANIZATION, SYSTEM_RUN, _OPENING, conversation_id=SYSTEM_RUN
                )
            )
        elif context.run_last_event_id(SYSTEM_RUN) == context.head.id:
            return None
        head = context.head
        signed = self.signer.sign(head.id, head.hash, context.chain_v2_from)
        event = NewEvent(EventType.CHAIN_HEAD, signed.payload())
        return context.append(prepare_append(SYSTEM_ORGANIZATION, SYSTEM_RUN, [event]))[0]


_UNKNOWN_KEY = (
    "a forgery, or a key the deployment signed with before a rotation (trust every such key: "
    "audit verify --public-key, repeatable; serve --trusted-public-key)"
)


@dataclass(frozen=True)
class HeadProblem:
    event_id: int
    reason: str


@dataclass
class HeadChecks:
    """What a walk of the chain checks of signed heads, event by event in id order.

    ``kept`` are heads an auditor kept outside the log: the event they name must have their
    hash, and the log must reach it. ``keys`` are the public keys trusted to sign; without any,
    a ``chain_head`` is checked for its link only.
    """

    keys: PublicKeys = field(default_factory=PublicKeys)
    kept: Sequence[SignedHead] = ()
    signed: int = 0
    """Heads whose signature verified with ``keys`` (in the log, and kept ones the walk
    reached); none without keys, since nothing was checked then."""
    signed_through: int = 0
    """The highest event id a verified signature covers."""
    kept_reached: int = 0
    """Kept heads the walk reached with their hash, signature checked or not."""
    anchored_through: int = 0
    """The highest event id a head vouches for: a kept head reached (the auditor's own copy),
    or a head whose signature verified. What it binds before it: ``offline_proof.py``."""
    versions: ChainVersions = field(default_factory=ChainVersions)
    """The chain versions the walk expects: the heads say where chain v2 starts."""

    def __post_init__(self) -> None:
        self._kept = {head.head_id: head for head in self.kept}

    def opening_problem(self) -> HeadProblem | None:
        """Before the walk: the kept heads must agree on where chain v2 starts."""
        for head in self.kept:
            where = f"the kept signed head of event {head.head_id}"
            problem = self.versions.learn(head.chain_v2_from, head.head_id, where)
            if problem is not None:
                return HeadProblem(problem.event_id, problem.reason)
        return None

    @property
    def ids(self) -> Mapping[int, SignedHead]:
        """The ids kept heads name (a walk that skips other events must not skip these)."""
        return self._kept

    def see(self, event: AgentEvent) -> HeadProblem | None:
        """Check ``event`` (whose own hash and link were already checked)."""
        problem = self.see_hash(event.id, event.hash)
        if problem is not None or event.event_type != CHAIN_HEAD:
            return problem
        return self._in_log(event) if event.organization_id == SYSTEM_ORGANIZATION else None

    def see_hash(self, event_id: int, event_hash: str) -> HeadProblem | None:
        """Compare the hash of event ``event_id`` with a kept head naming it, if any: all a
        redacted line offers, and all the comparison needs."""
        kept = self._kept.get(event_id)
        if kept is None:
            return None
        if event_hash != kept.head_hash:
            return HeadProblem(
                event_id,
                "the hash of this event is not the one a kept signed head names: "
                "the chain was rewritten up to here",
            )
        self.kept_reached += 1
        self.anchored_through = max(self.anchored_through, event_id)
        if self.keys and self.keys.problem(kept) is None:
            self._count(kept)
        return None

    def _in_log(self, event: AgentEvent) -> HeadProblem | None:
        try:
            head = SignedHead.from_json(decode_json(event.payload_json))
        except ValueError as exc:
            return HeadProblem(event.id, f"a malformed chain_head: {exc}")
        if self.keys:
            problem = self.keys.problem(head)
            if problem is not None and not self.keys.knows(head.key_id):
                return HeadProblem(event.id, f"{problem}: {_UNKNOWN_KEY}")
            if problem is not None:
                return HeadProblem(event.id, f"{problem}: the chain was rewritten up to here")
        if head.head_id != event.id - 1 or head.head_hash != event.prev_hash:
            return HeadProblem(
                event.id,
                "this chain_head signs another hash than the chain has before it: "
                "the chain was rewritten up to here",
            )
        where = f"the signed head in event {event.id}"
        cutover = self.versions.learn(head.chain_v2_from, event.id, where)
        if cutover is not None:
            return HeadProblem(cutover.event_id, cutover.reason)
        if self.keys:
            self._count(head)
        return None

    def _count(self, head: SignedHead) -> None:
        self.signed += 1
        self.signed_through = max(self.signed_through, head.head_id)
        self.anchored_through = max(self.anchored_through, head.head_id)

    def finish(self, first_id: int, last_id: int) -> HeadProblem | None:
        """After the last event: a kept head past it means the tail was cut (with the id
        counter rewound, since the walk found no id missing), one before the first was never
        compared (the start was cut, or not given); with keys, some head must hold."""
        before = [head_id for head_id in self._kept if head_id < first_id]
        if before:
            return HeadProblem(
                min(before),
                f"a kept signed head names event {min(before)}, before the first event given "
                f"({first_id}): the start of the log was removed, or the files that hold it "
                "were not given",
            )
        beyond = [head_id for head_id in self._kept if head_id > last_id]
        if beyond:
            return HeadProblem(
                last_id + 1,
                f"the log ends at event {last_id}, but a kept signed head names event "
                f"{max(beyond)}: events at the end of the log were removed",
            )
        if self.keys and self.signed == 0:
            return HeadProblem(
                1,
                "no head signed by the given public keys was found: nothing in this log is "
                "proven (a rehashed chain whose signed heads were removed looks like this)",
            )
        return None
