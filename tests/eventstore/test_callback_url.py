"""The callback URL schema pattern promises exactly what the server's check accepts."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.client.contract import CALLBACK_URL_PATTERN
from eventstore.callback_url import check_callback_url

PATTERN = re.compile(CALLBACK_URL_PATTERN)


@given(st.from_regex(PATTERN, fullmatch=True))
def test_every_url_the_schema_allows_is_accepted(url: str) -> None:
    assert check_callback_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook\n",
        "http://exa mple.com/",
        "javascript://example.com/",
        "http://example.com:65536/",
        "http://example.com:0/",
        "http://-bad.example/",
        "http://ex\u00f2mple.com/",
        "http:///no-host",
        "ftp://example.com/",
    ],
)
def test_urls_the_check_refuses_do_not_match_the_schema(url: str) -> None:
    with pytest.raises(ValueError, match="callback_url"):
        check_callback_url(url)
    assert PATTERN.fullmatch(url) is None


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/a?b=c#d", "http://u:p@example.com:8080/", "HTTP://a.b."]
)
def test_ordinary_urls_match_the_schema(url: str) -> None:
    assert PATTERN.fullmatch(url) is not None
    assert check_callback_url(url) == url
