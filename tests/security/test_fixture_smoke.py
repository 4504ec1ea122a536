"""The security fixtures give each organization's keys their own organization and role."""

from __future__ import annotations

import pytest

from api.server.auth import Role
from tests.security.conftest import ORGANIZATIONS, Tenants

pytestmark = pytest.mark.anyio


async def test_each_key_is_its_organization_and_role(tenants: Tenants) -> None:
    for organization in ORGANIZATIONS:
        for role in Role:
            answer = await tenants.client(organization, role).get("/v1/me")
            assert answer.status_code == 200
            assert answer.json()["organization_id"] == organization
            assert answer.json()["role"] == role.label
