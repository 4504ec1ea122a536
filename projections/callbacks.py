"""Durable callbacks: what to deliver, when, and how each attempt is recorded.

Pending deliveries are derived from the log (``callback_pending`` in the read model, set when a
run with a ``callback_url`` reaches a terminal status, cleared by the attempt marked ``final``),
so a server killed mid-retry delivers after its restart. Each attempt is appended as a
``callback_attempted`` event. Delivery is at least once: a server that dies after sending but
before recording sends again, so receivers dedupe on the delivery id (stable per run ending).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from eventstore import EventStore, EventType, NewEvent, WriteContext, prepare_append

from .readmodel import RUN_COLUMNS, load_state, state_from_row
from .state import RunState

__all__ = [
    "CallbackPolicy",
    "Delivery",
    "due_deliveries",
    "organization_secret",
    "record_attempt",
    "sign",
]

SIGNATURE_HEADER = "X-Runtrack-Signature"
TIMESTAMP_HEADER = "X-Runtrack-Timestamp"
DELIVERY_HEADER = "X-Runtrack-Delivery"
SECRET_CONTEXT = b"runtrack callback v1\0"
"""Prefixes the organization id when deriving its secret, so the derived key is used for nothing
else."""


@dataclass(frozen=True)
class CallbackPolicy:
    max_attempts: int = 8
    base_delay: float = 1.0
    max_delay: float = 300.0
    timeout: float = 5.0
    secret: str | None = None

    def delay_before(self, attempt: int, delivery_id: str) -> float:
        """Exponential backoff with a jitter of up to ±20 %, stable for a delivery and attempt."""
        if attempt <= 1:
            return 0.0
        raw = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 2))
        seed = hashlib.sha256(f"{delivery_id}/{attempt}".encode()).digest()[0] / 255
        return float(raw * (0.8 + 0.4 * seed))


@dataclass(frozen=True)
class Delivery:
    run: RunState
    attempt: int
    body: bytes

    @property
    def delivery_id(self) -> str:
        return self.run.callback_delivery_id or self.run.run_id

    def headers(self, policy: CallbackPolicy, now: datetime) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: self.delivery_id,
            "User-Agent": "runtrack-callbacks",
        }
        if policy.secret is not None:
            timestamp = str(int(now.timestamp()))
            headers[TIMESTAMP_HEADER] = timestamp
            secret = organization_secret(policy.secret, self.run.organization_id)
            headers[SIGNATURE_HEADER] = sign(secret, timestamp, self.body)
        return headers


def organization_secret(secret: str, organization_id: str) -> str:
    """The key one organization's receivers verify with, derived from the deployment's secret.

    Each organization holds only its own, so it cannot sign a body another one would accept.
    """
    context = SECRET_CONTEXT + organization_id.encode()
    return hmac.new(secret.encode(), context, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def callback_body(run: RunState) -> bytes:
    body = {
        "organization_id": run.organization_id,
        "run_id": run.run_id,
        "status": run.status.value,
        "stop_reason": run.stop_reason,
        "completed_at": run.completed_at,
        "metadata": run.metadata,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


_PENDING_BY_ORGANIZATION = f"""
SELECT {RUN_COLUMNS} FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY organization_id ORDER BY completed_at, run_id) AS n
    FROM runs WHERE callback_pending = 1
) AS pending WHERE n <= ? ORDER BY n, completed_at LIMIT ?"""


async def due_deliveries(
    store: EventStore,
    policy: CallbackPolicy,
    now: datetime,
    *,
    per_organization: int = 100,
    limit: int = 1000,
) -> list[Delivery]:
    """Pending deliveries whose next attempt is due at ``now``, interleaved by organization.

    At most ``per_organization`` of each organization's oldest are looked at, and the order is
    every organization's oldest first, then every one's second, ...: an organization with many
    pending deliveries cannot push another's out of the ``limit``.
    """
    rows = await store.fetchall(_PENDING_BY_ORGANIZATION, (per_organization, limit))
    due = []
    for row in rows:
        run = state_from_row(row)
        attempt = run.callback_attempts + 1
        last = run.callback_sent_at if run.callback_attempts else run.completed_at
        wait = timedelta(seconds=policy.delay_before(attempt, run.callback_delivery_id or ""))
        if last is None or datetime.fromisoformat(last) + wait <= now:
            due.append(Delivery(run, attempt, callback_body(run)))
    return due


async def record_attempt(
    store: EventStore,
    delivery: Delivery,
    policy: CallbackPolicy,
    *,
    status_code: int | None,
    error: str | None,
    give_up: bool = False,
) -> bool:
    """Append the attempt, unless another server already recorded this one (returns False).

    ``give_up`` makes it the last attempt although attempts are left (retrying cannot help).
    """
    succeeded = status_code is not None and 200 <= status_code < 300
    final = succeeded or give_up or delivery.attempt >= policy.max_attempts
    payload = {
        "attempt": delivery.attempt,
        "status_code": status_code,
        "error": error,
        "delivery_id": delivery.delivery_id,
        "final": final,
    }
    event = NewEvent(EventType.CALLBACK_ATTEMPTED, payload)
    run = delivery.run

    def unit(context: WriteContext) -> bool:
        current = load_state(context.tx, run.run_id)
        if current is None or not _still_expected(current, delivery):
            return False
        context.append(prepare_append(run.organization_id, run.run_id, [event]))
        return True

    return await store.transact(unit)


def _still_expected(current: RunState, delivery: Delivery) -> bool:
    return (
        current.callback_pending
        and current.callback_delivery_id == delivery.run.callback_delivery_id
        and current.callback_attempts == delivery.attempt - 1
    )
