"""Offline verification of an export: ``python -m bench.audit [--quick] [--events N]``.

Two exports are verified: one as ``events export`` writes it for an organization (its own
events whole, a third of the log, another organization's, redacted to ids and hashes) and one
with every event whole (a single-organization deployment); both with a signed head every
10,000 events. What is timed is ``runtrack audit verify --file`` without its process start:
reading the file, recomputing every content hash, checking every link and signature (with the
worker processes ``eventstore/offline_parallel.py`` starts for a large export, whose CPU is
counted in the CPU per event). Target (issue 19): at least 200,000 events/s.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from bench._machine import describe_machine
from eventstore import (
    GENESIS_HASH,
    SYSTEM_ORGANIZATION,
    SYSTEM_RUN,
    AgentEvent,
    HeadChecks,
    HeadSigner,
    PublicKeys,
    canonical_json,
    event_content_hash,
    event_hash,
    generate_key_file,
    open_sources,
    verify_sources,
)

TARGET = 200_000
HEAD_EVERY = 10_000
CREATED_AT = "2026-12-01T10:00:00.123456+00:00"


def _event(event_id: int, prev: str, signer: HeadSigner) -> AgentEvent:
    """Event ``event_id``: a message, a step or a tool result; a signed head every
    ``HEAD_EVERY`` events."""
    if event_id % HEAD_EVERY == 0:
        org, run, kind = SYSTEM_ORGANIZATION, SYSTEM_RUN, "chain_head"
        payload = canonical_json(signer.sign(event_id - 1, prev, chain_v2_from=1).payload())
    else:
        org, run = ("org-a", f"run-{event_id % 500}")
        kind, body = _kinds[event_id % 3]
        payload = canonical_json({**body, "n": event_id})
    digest = event_hash(
        id=event_id,
        organization_id=org,
        run_id=run,
        conversation_id=run,
        sequence=event_id // 500 + 1,
        event_type=kind,
        visibility="operator",
        payload_json=payload,
        created_at=CREATED_AT,
        prev_hash=prev,
    )
    return AgentEvent(
        event_id, org, run, run, event_id // 500 + 1, kind, "operator", payload, CREATED_AT,
        prev, digest,
    )  # fmt: skip


_kinds = (
    ("message_created", {"role": "assistant", "content": "Here is the summary you asked for."}),
    ("step_completed", {"model": "m-large", "prompt_tokens": 812, "completion_tokens": 95}),
    ("tool_finished", {"tool_call_id": "call-1", "name": "search", "result": {"hits": 3}}),
)


def write_export(path: Path, count: int, signer: HeadSigner, *, redact: bool) -> None:
    prev = GENESIS_HASH
    with path.open("w") as out:
        for event_id in range(1, count + 1):
            event = _event(event_id, prev, signer)
            if redact and event_id % 3 == 1 and event.event_type != "chain_head":
                stub = f'"prev_hash":"{event.prev_hash}","hash":"{event.hash}"'
                content = f'"content_hash":"{event_content_hash(event)}"'
                out.write(f'{{"id":{event_id},{stub},{content},"redacted":true}}\n')
            else:
                out.write(event.to_json() + "\n")
            prev = event.hash


def _cpu_seconds() -> float:
    """This process's CPU and that of its children that ended (the workers)."""
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(count: int, *, redact: bool) -> tuple[float, float, int]:
    """Events/s, µs of CPU per event, redacted lines."""
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as scratch:
        folder = Path(scratch)
        signer = generate_key_file(folder / "signing.pem")
        export = folder / "export.jsonl"
        write_export(export, count, signer, redact=redact)
        started, cpu = time.perf_counter(), _cpu_seconds()
        report = verify_sources(
            open_sources([export], None, None), HeadChecks(PublicKeys([signer.public]))
        )
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    assert report.ok, report
    assert report.events == count
    return count / seconds, cpu / count * 1e6, report.redacted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small export, a few seconds")
    parser.add_argument("--events", type=int, default=None, help="events in the export")
    parser.add_argument("--postgres", help="ignored: offline verification reads files")
    args = parser.parse_args()
    count = args.events or (20_000 if args.quick else 1_000_000)
    print(describe_machine())
    rate, rate_cpu, redacted = measure(count, redact=True)
    whole, whole_cpu, _ = measure(count, redact=False)
    print(f"  events {count:,}, signed heads every {HEAD_EVERY:,}; load {_load()}")
    org = f"  organization's export ({redacted:,} redacted)"
    print(f"{org} {rate:>12,.0f} ev/s {rate_cpu:6.2f} µs CPU/ev")
    print(
        f"  {'every event whole':<{len(org) - 2}} {whole:>12,.0f} ev/s {whole_cpu:6.2f} µs CPU/ev"
    )
    verdict = "met" if min(rate, whole) >= TARGET else "NOT met"
    print(
        f"audit: offline_verify_ev_s={min(rate, whole):.0f} redacted_ev_s={rate:.0f} "
        f"whole_ev_s={whole:.0f} target={TARGET} ({verdict})"
    )


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
