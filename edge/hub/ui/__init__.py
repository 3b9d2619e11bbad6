"""The hub's web console under /ui/ (docs/console.md): server-rendered pages (Jinja2), htmx and
a classless stylesheet fetched at set-up time (`edge-verifier ui fetch`), accounts with roles,
sessions kept in the hub's store. Every change goes through the hub's service and store, as the
API's do: no rule lives only in a page.

- passwords.py: scrypt hashes; roles.py: the roles and what each may do;
- sessions.py: login, sessions, timeouts, the login rate limit;
- guard.py: security headers, CSRF checks, the role check of every page (one decorator);
- static.py: the fetched static files (pinned in assets.toml), served from memory;
- pages.py: the routes; templates/: the pages;
- accounts_cli.py: `edge-verifier hub user ...`.
"""
