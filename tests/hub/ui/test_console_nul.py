"""A NUL character anywhere a console request carries text (the login form, a person's name, the
search, a person's id in the address): a clear 400, never a 500, and never the hub's health.
PostgreSQL refuses NUL in text; the store counted that as its own failure, so one request
without a login turned every hub process's /health degraded (SQLite stored or missed it)."""

from __future__ import annotations

import pytest
import requests

from tests.hub.ui.support import Browser, console_hub


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request) -> str:
    if request.param == "sqlite":
        return ""
    from tests.support.pg import new_database

    return new_database(request.getfixturevalue("pg_cluster"))


def test_a_nul_in_console_text_is_a_clear_400_and_the_hub_stays_healthy(tmp_path, store_url):
    with console_hub(tmp_path, store_url) as hub:
        def healthy() -> bool:
            return requests.get(hub.url + "/health", timeout=10).json()["status"] == "ok"

        browser = Browser(hub.url)
        login = browser.login("ada\x00x")
        assert login.status_code == 400 and "Traceback" not in login.text
        assert healthy()
        assert browser.login("otto").status_code == 303
        for response in (browser.post("/ui/persons/p1/rename", {"person_name": "Pa\x00ula"}),
                         browser.get("/ui/persons?q=a%00b"), browser.get("/ui/persons/p%001")):
            assert response.status_code == 400, response.text[:300]
            assert "NUL" in response.text
        assert healthy()
        assert browser.get("/ui/persons?q=Pa").status_code == 200  # the console goes on
