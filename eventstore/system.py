"""The reserved organization that holds the server's own events (signed chain heads).

No key can be created for it, so no tenant reads or writes it through the API; the archive
never lets its runs hold the cut back (they are the server's bookkeeping, not agents' work).
"""

from __future__ import annotations

__all__ = ["SYSTEM_ORGANIZATION", "is_reserved_organization"]

SYSTEM_ORGANIZATION = "runtrack-system"


def is_reserved_organization(organization_id: str) -> bool:
    """Whether ``organization_id`` belongs to the server: refused for keys and appends."""
    return organization_id == SYSTEM_ORGANIZATION
