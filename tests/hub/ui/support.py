"""A browser-like HTTP client of the console (requests), and hubs with accounts to drive it."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import requests

from tests.support.hub import APPID, OTHER_APPID, HubServer, start_hub

PASSWORD = "correct horse battery"
# (username, appid, role) of the accounts every console test hub has
ACCOUNTS = [("ada", APPID, "admin"), ("otto", APPID, "operator"), ("vera", APPID, "viewer"),
            ("zed", OTHER_APPID, "admin")]


def without_tokens(html: str) -> str:
    """The page less its random hex tokens (CSRF), so that "ada" or "12345" not being in it means
    not shown, not merely absent from one token by chance."""
    return re.sub(r"[0-9a-f]{32,}", "", html)


def add_accounts(store, accounts=ACCOUNTS, password: str = PASSWORD) -> None:
    from edge.hub.ui import accounts as console_accounts

    for username, appid, role in accounts:
        console_accounts.add(store, username, appid, role, password)


@contextmanager
def console_hub(tmp_dir: Path, store_url: str = "", **sections) -> Iterator[HubServer]:
    with start_hub(tmp_dir, store_url, **sections) as hub:
        add_accounts(hub.store)
        yield hub


class Browser:
    """What a browser sends for same-origin navigation: Origin and Sec-Fetch-Site, cookies."""

    def __init__(self, base: str, verify=True):
        self.base = base
        self.http = requests.Session()
        self.verify = verify  # per request: REQUESTS_CA_BUNDLE would override a session's
        self.csrf = ""

    def headers(self, extra: dict | None = None) -> dict:
        return {"Origin": self.base, "Sec-Fetch-Site": "same-origin", **(extra or {})}

    def get(self, path: str, **kw) -> requests.Response:
        resp = self.http.get(self.base + path, allow_redirects=False, timeout=60, verify=self.verify, **kw)
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', resp.text)
        if found:
            self.csrf = found[1]
        return resp

    def post(self, path: str, data: dict | None = None, *, csrf: bool = True, headers: dict | None = None,
             files=None) -> requests.Response:
        fields = dict(data or {})
        if csrf:
            fields.setdefault("csrf", self.csrf)
        return self.http.post(self.base + path, data=fields, files=files, headers=self.headers(headers),
                              allow_redirects=False, timeout=120, verify=self.verify)

    def login(self, username: str, password: str = PASSWORD) -> requests.Response:
        form = self.get("/ui/login")
        token = re.search(r'name="login_token" value="([^"]+)"', form.text)[1]
        resp = self.post("/ui/login", {"username": username, "password": password, "login_token": token},
                         csrf=False)
        if resp.status_code == 303:
            self.get("/ui/persons")  # picks up the session's CSRF token
        return resp
