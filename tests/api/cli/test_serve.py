"""Every ``runtrack serve`` option reaches the server's Settings."""

from __future__ import annotations

import dataclasses
import inspect

from api.cli.local_verbs import serve, settings_from
from api.server.settings import Settings


def test_every_serve_option_is_a_setting_and_is_passed_on() -> None:
    options = inspect.signature(serve).parameters
    fields = {field.name for field in dataclasses.fields(Settings)}
    assert set(options) <= fields
    values = {name: f"value-{name}" for name in options}
    settings = settings_from(values)
    assert {name: getattr(settings, name) for name in options} == values


def test_every_serve_default_is_the_settings_default() -> None:
    """The CLI writes its defaults itself (its help shows them without loading the server):
    they must be the server's, or ``runtrack serve`` and ``Settings()`` would differ."""
    defaults = {field.name: field.default for field in dataclasses.fields(Settings)}
    options = inspect.signature(serve).parameters
    differ = {
        name: (option.default, defaults[name])
        for name, option in options.items()
        if name not in ("demo", "callback_allow_networks", "trusted_public_keys")
        and option.default != defaults[name]
    }
    assert differ == {}
