"""Console sessions on real hubs on loopback: logout seen by another hub process on the same
store, idle and absolute timeouts (an injected clock), the login rate limit, and the account CLI
(`edge-verifier hub user ...`) including the password reset that ends sessions."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import tomli_w

from edge.hub.ui.sessions import SessionPolicy
from tests.hub.ui.support import PASSWORD, Browser, console_hub
from tests.support.hub import APPID


def test_logout_on_one_hub_process_ends_the_session_on_another(tmp_path):
    from edge.hub.store import SqliteStore
    from tests.hub.ui.support import add_accounts
    from tests.support.pg import hub_processes

    store_path = tmp_path / "hub.sqlite3"
    store = SqliteStore(store_path)
    add_accounts(store)
    store.close()
    with hub_processes(tmp_path, f"sqlite:///{store_path}", count=2) as (first, second):
        browser = Browser(first.url)
        assert browser.login("vera").status_code == 303
        on_second = Browser(second.url)
        on_second.http.cookies.set("edge-console", browser.http.cookies["edge-console"])
        assert on_second.get("/ui/persons").status_code == 200  # one session, two OS processes
        assert on_second.post("/ui/logout", {"csrf": browser.csrf}).status_code == 303
        assert browser.get("/ui/persons").status_code == 303  # gone on the first one too


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hub(tmp_path):
    with console_hub(tmp_path) as hub:
        yield hub


def test_a_session_ends_after_its_idle_time_and_after_its_absolute_time(hub):
    clock = Clock()
    sessions = hub.app.state.console.sessions
    sessions.clock = clock
    policy = SessionPolicy()
    browser = Browser(hub.url)
    browser.login("vera")
    clock.now += policy.idle_s - 60
    assert browser.get("/ui/persons").status_code == 200  # used in time: the idle time starts again
    clock.now += policy.idle_s - 60
    assert browser.get("/ui/persons").status_code == 200
    clock.now += policy.idle_s + 1
    assert browser.get("/ui/persons").status_code == 303  # idle too long
    browser.login("vera")
    start = clock.now
    while clock.now - start < policy.absolute_s - policy.idle_s:
        clock.now += policy.idle_s / 2
        assert browser.get("/ui/persons").status_code == 200
    clock.now = start + policy.absolute_s + 1
    assert browser.get("/ui/persons").status_code == 303  # used all along, but logged in too long ago
    assert browser.get("/ui/persons").status_code == 303


def test_logins_are_rate_limited_per_account_and_per_address(hub):
    policy = SessionPolicy()
    browser = Browser(hub.url)
    for _ in range(policy.account_failures):
        assert browser.login("ada", "a wrong password!").status_code == 401
    refused = browser.login("ada")  # the right password, too late
    assert refused.status_code == 429 and "too many failed logins" in refused.text
    assert Browser(hub.url).login("otto").status_code == 303  # another account from this address
    for i in range(policy.address_failures - policy.account_failures):
        assert browser.login(f"guess{i}", "a wrong password!").status_code == 401
    assert Browser(hub.url).login("otto").status_code == 429  # this address is done guessing
    clock = Clock(time.time() + policy.failure_window_s + 1)
    hub.app.state.console.sessions.clock = clock
    assert Browser(hub.url).login("ada").status_code == 303  # the window has passed


def write_config(hub, path) -> str:
    config = {"storage": {"path": str(hub.store_path)},
              "credentials": [{"appid": APPID, "secret_id": hub.secret_id, "secret_key": hub.secret_key}]}
    path.write_bytes(tomli_w.dumps(config).encode())
    path.chmod(0o600)
    return str(path)


def cli(*args, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", "hub", "user", *args], input=stdin, capture_output=True,
                          text=True, timeout=120)


def test_the_account_cli_adds_lists_resets_and_deletes(hub, tmp_path):
    config = write_config(hub, tmp_path / "hub.toml")
    added = cli("add", "root", "--role", "admin", "--config", config, stdin="a brand new password\n")
    assert added.returncode == 0, added.stderr
    assert hub.store.account("root").appid == APPID and hub.store.account("root").role == "admin"
    assert "a brand new password" not in hub.store.account("root").password
    assert cli("add", "root", "--role", "admin", "--config", config, stdin="a brand new password\n").returncode == 1
    short = cli("add", "shorty", "--role", "viewer", "--config", config, stdin="short\n")
    assert short.returncode == 1 and "12 characters" in short.stderr
    listed = cli("list", "--config", config)
    assert '"username": "root"' in listed.stdout and "scrypt" not in listed.stdout
    browser = Browser(hub.url)
    assert browser.login("root", "a brand new password").status_code == 303
    # a lost password: reset on the hub, every session of the account ends
    reset = cli("passwd", "root", "--config", config, stdin="another good password\n")
    assert reset.returncode == 0, reset.stderr
    assert browser.get("/ui/persons").status_code == 303
    assert Browser(hub.url).login("root", "a brand new password").status_code == 401
    assert Browser(hub.url).login("root", "another good password").status_code == 303
    assert cli("del", "root", "--config", config).returncode == 0
    assert hub.store.account("root") is None
    assert Browser(hub.url).login("root", "another good password").status_code == 401
    assert Browser(hub.url).login("ada", PASSWORD).status_code == 303  # the others are untouched


def test_the_account_cli_prompts_twice_on_a_terminal_and_echoes_nothing(hub, tmp_path):
    import os
    import pty
    import select

    config = write_config(hub, tmp_path / "hub.toml")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI with the terminal as its standard input
        os.execv(sys.executable, [sys.executable, "-m", "edge", "hub", "user", "add", "tty-user", "--role", "viewer",
                                  "--config", config])
    seen = b""
    deadline = time.monotonic() + 120
    answers = [b"typed at a prompt\n", b"typed at a prompt\n"]
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
        if answers and seen.count(b":") > 2 - len(answers):  # "New password:" then "Again:"
            os.write(fd, answers.pop(0))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert b"New password:" in seen and b"Again:" in seen and b"typed at a prompt" not in seen
    assert Browser(hub.url).login("tty-user", "typed at a prompt").status_code == 303


def test_logins_sent_at_once_get_no_more_password_checks_than_the_limit(hub):
    """The limit was read, the password checked (a quarter of a second), and only then the
    failure written: twelve logins sent at once were all checked against a limit of five. Each
    attempt is now counted before its check, in one transaction with the count."""
    from concurrent.futures import ThreadPoolExecutor

    policy = SessionPolicy()
    browsers = [Browser(hub.url) for _ in range(12)]
    for b in browsers:
        b.get("/ui/login")  # each its login form's token first, as a browser has it
    with ThreadPoolExecutor(len(browsers)) as pool:
        codes = sorted(pool.map(lambda b: b.login("ada", "a wrong password!").status_code, browsers))
    assert codes.count(401) == policy.account_failures and codes.count(429) == 12 - policy.account_failures


def test_an_ipv6_host_is_counted_by_its_64_and_checks_wait_their_turn(hub, monkeypatch):
    """A host holds a whole /64: counted per address, it had billions of fresh ones to guess
    from. And a process checks at most PASSWORD_CHECKS_AT_ONCE passwords at once (scrypt: 32 MiB
    and a quarter of a second each): logins from many addresses took every core and the threads
    the face API shares; one that cannot get its turn is told to retry, its attempt counted."""
    from edge.hub.ui import sessions as sessions_module
    from edge.hub.ui.sessions import PASSWORD_CHECKS_AT_ONCE, LoginRefused, address_key

    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1") == "addr:2001:db8::/64"
    assert address_key("2001:db8:0:1::1") != address_key("2001:db8::1")
    assert address_key("::ffff:192.0.2.7") == address_key("192.0.2.7") == "addr:192.0.2.7"
    sessions = hub.app.state.console.sessions
    policy = SessionPolicy()
    for i in range(policy.address_failures):  # one host, a fresh address each time
        with pytest.raises(LoginRefused) as refused:
            sessions.login(f"guess{i}", "a wrong password!", f"2001:db8::{i + 1:x}")
        assert not refused.value.limited
    with pytest.raises(LoginRefused) as refused:
        sessions.login("ada", PASSWORD, "2001:db8::beef")
    assert refused.value.limited
    assert sessions.login("ada", PASSWORD, "2001:db8:0:1::1")[1].username == "ada"  # the next /64

    monkeypatch.setattr(sessions_module, "CHECK_WAIT_S", 0.2)
    for _ in range(PASSWORD_CHECKS_AT_ONCE):  # every turn taken, as by slow checks in flight
        sessions._checking.acquire()
    try:
        with pytest.raises(LoginRefused, match="busy") as refused:
            sessions.login("ada", PASSWORD, "192.0.2.9")
        assert refused.value.limited
    finally:
        for _ in range(PASSWORD_CHECKS_AT_ONCE):
            sessions._checking.release()
    assert sessions.login("ada", PASSWORD, "192.0.2.9")[1].username == "ada"


def test_a_forwarded_for_header_neither_escapes_nor_aims_the_per_address_limit(hub):
    """uvicorn believed `X-Forwarded-For` on every connection from the loopback, where the hub
    sits behind its TLS proxy (`tls_proxy`): a client that sent its own header got a fresh
    address for each guess (20 per address escaped: every username tried 5 times from anywhere),
    or sent an admin's address in it to use up that address's failures. The hub takes the
    address of the connection; behind a proxy, the proxy's (documented)."""
    policy = SessionPolicy()
    for i in range(policy.address_failures):
        guesser = Browser(hub.url)
        guesser.http.headers["X-Forwarded-For"] = f"203.0.113.{i}"
        assert guesser.login(f"guess{i}", "a wrong password!").status_code == 401
    spoofed = Browser(hub.url)
    spoofed.http.headers["X-Forwarded-For"] = "198.51.100.7"
    assert spoofed.login("otto").status_code == 429  # every guess was this address's


def test_a_hash_of_older_parameters_is_stored_again_at_the_next_login(hub):
    """Hashes made with N = 2**15, r = 8, p = 1 (a quarter of OWASP's work) stayed so for good:
    only a reset changed them. The next login with the right password stores today's hash;
    the session it opens and the account's other sessions stay; a wrong password changes
    nothing, and a reset made meanwhile is never overwritten."""
    import base64
    import hashlib

    from edge.hub.ui.passwords import LOG2_N, P, R, needs_rehash, rehash, verify_password

    store = hub.app.state.console.store
    first = Browser(hub.url)
    assert first.login("ada").status_code == 303  # a session open before
    salt = b"0123456789abcdef"
    old = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=1 << 15, r=8, p=1, dklen=32, maxmem=64 << 20)
    old_hash = f"scrypt$15$8$1${base64.b64encode(salt).decode()}${base64.b64encode(old).decode()}"
    assert store.rehash_password("ada", store.account("ada").password, old_hash)  # as older code stored it
    assert needs_rehash(old_hash) and verify_password(PASSWORD, old_hash)
    assert Browser(hub.url).login("ada", "a wrong password!").status_code == 401
    assert store.account("ada").password == old_hash
    second = Browser(hub.url)
    assert second.login("ada").status_code == 303
    upgraded = store.account("ada").password
    assert upgraded.startswith(f"scrypt${LOG2_N}${R}${P}$") and not needs_rehash(upgraded)
    assert verify_password(PASSWORD, upgraded)
    assert first.get("/ui/persons").status_code == 200 and second.get("/ui/persons").status_code == 200

    assert not store.rehash_password("ada", old_hash, rehash(PASSWORD))  # a reset came between
    assert store.account("ada").password == upgraded


def test_a_login_checking_the_old_password_while_it_is_reset_gets_no_session(hub, monkeypatch):
    """A reset (`hub user passwd`, to lock out whoever knows the old password) ended the
    account's sessions, but a login whose password check was running then (a quarter of a
    second of scrypt) made its session after: 12 h with the old password. Someone trying it
    back to back always has one in flight. The reset is made to land inside the real check."""
    from edge.hub.ui import accounts
    from edge.hub.ui import sessions as sessions_module

    real_check = sessions_module.verify_password
    reset = []

    def check_then_reset(password, encoded):
        matched = real_check(password, encoded)
        if not reset:
            reset.append(True)
            accounts.reset_password(hub.app.state.console.store, "ada", "a brand new password 42")
        return matched

    monkeypatch.setattr(sessions_module, "verify_password", check_then_reset)
    racing = Browser(hub.url)
    assert racing.login("ada").status_code == 401 and reset
    assert racing.get("/ui/persons").status_code == 303  # no session: back to the login page
    monkeypatch.setattr(sessions_module, "verify_password", real_check)
    assert Browser(hub.url).login("ada", "a brand new password 42").status_code == 303


def test_two_logins_at_once_after_the_hash_upgrade_both_get_in(hub, monkeypatch):
    """Two logins checking the old hash at once (two checks may run together, or two hub
    processes): the first stored today's hash, the second's upgrade then matched nothing, its
    session was made against the old hash and refused: the right password answered "wrong
    username or password". The other login's upgrade is made to land just before this one's."""
    import base64
    import hashlib

    from edge.hub.ui.passwords import rehash

    store = hub.app.state.console.store
    salt = b"0123456789abcdef"
    old = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=1 << 15, r=8, p=1, dklen=32, maxmem=64 << 20)
    old_hash = f"scrypt$15$8$1${base64.b64encode(salt).decode()}${base64.b64encode(old).decode()}"
    assert store.rehash_password("ada", store.account("ada").password, old_hash)
    real_rehash = store.rehash_password

    def the_other_login_first(username, checked, upgraded):
        assert real_rehash(username, checked, rehash(PASSWORD))  # the other login's, committed first
        return real_rehash(username, checked, upgraded)

    monkeypatch.setattr(store, "rehash_password", the_other_login_first)
    assert Browser(hub.url).login("ada").status_code == 303
    monkeypatch.setattr(store, "rehash_password", real_rehash)
    assert Browser(hub.url).login("ada").status_code == 303


def test_a_password_typed_as_the_username_is_neither_logged_nor_stored(hub, caplog):
    """The password typed in the username box (a common slip) went to the journal (`login as
    '<the password>' refused`) and into the store's login failures (copied by `hub backup`).
    An unknown username is logged as such, an account's by name; the failures are kept by a
    hash of the name."""
    import sqlite3

    with caplog.at_level("WARNING", logger="edge.hub.ui"):
        assert Browser(hub.url).login(PASSWORD, "ada").status_code == 401
        assert Browser(hub.url).login("ada", "a wrong password!").status_code == 401
    logged = caplog.text
    assert PASSWORD not in logged and "login as an unknown username from" in logged
    assert "login as 'ada' from" in logged
    with sqlite3.connect(hub.store_path) as db:
        keys = [k for (k,) in db.execute("SELECT key FROM console_login_failures")]
    assert len(keys) == 4 and not any(PASSWORD in k or "ada" in k for k in keys)
    # nor a plain hash of it, which a dictionary turns back into a weak password
    import hashlib

    assert "user:" + hashlib.sha256(PASSWORD.encode()).hexdigest() not in keys
