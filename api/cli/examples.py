"""The examples each verb's ``--help`` ends with, by the verb's path."""

from __future__ import annotations

__all__ = ["EXAMPLES"]

EXAMPLES: dict[str, tuple[str, ...]] = {
    "send": (
        'runtrack send my-agent "Process this data"',
        'runtrack send my-agent "Process this data" --no-wait',
    ),
    "get runs": (
        "runtrack get runs --active --agent my-agent --limit 50",
        "runtrack get runs --status failed -o json",
        "runtrack get runs --watch --active",
        "runtrack get runs --no-ux",
    ),
    "get run": (
        "runtrack get run RUN_ID",
        "runtrack get run RUN_ID --wait --messages",
    ),
    "track": (
        "runtrack track RUN_ID_1 RUN_ID_2",
        "runtrack track --agent my-agent",
        'runtrack track "$RUN" --no-ux && echo "all completed"',
    ),
    "cancel": ('runtrack cancel RUN_ID --reason "wrong input"',),
    "resume": ("runtrack resume RUN_ID",),
    "answer": (
        "runtrack answer RUN_ID yes --text",
        """runtrack answer RUN_ID '{"approve": true}'""",
    ),
    "events tail": (
        "runtrack events tail --run RUN_ID",
        "runtrack events tail --follow --cursor-file tail.cursor",
    ),
    "events export": (
        "runtrack events export > log.jsonl",
        "runtrack events export --visibility internal --after 1000",
    ),
    "debug conversation": (
        "runtrack debug conversation CONVERSATION_ID",
        "runtrack debug conversation CONVERSATION_ID --children -o json > dump.json",
    ),
    "audit verify": (
        "runtrack audit verify --head head.json --public-key signing.pem.pub",
        "runtrack audit verify --file log.jsonl --archive archive/ --public-key signing.pem.pub",
        "runtrack audit verify --run RUN_ID",
    ),
    "audit keygen": ("runtrack audit keygen --out signing.pem",),
    "archive": (
        "runtrack archive --older-than 30d --to /var/lib/runtrack/archive",
        "runtrack archive --before 1000000 --to ./archive --database runtrack.db",
    ),
    "serve": (
        "runtrack serve --database runtrack.db --port 8000",
        "runtrack serve --database postgresql://localhost/runtrack --processes 4",
        "runtrack serve --demo",
    ),
    "keys create": (
        "runtrack keys create --role admin",
        'KEY=$(runtrack keys create --role user --organization acme --name "ci")',
    ),
    "keys list": ("runtrack keys list --database runtrack.db",),
    "keys revoke": ("runtrack keys revoke KEY_ID",),
    "callbacks secret": (
        "RUNTRACK_CALLBACK_SECRET=... runtrack callbacks secret --organization acme",
    ),
    "projections rebuild": ("runtrack projections rebuild --check", "runtrack projections rebuild"),
}
