"""The hub: the face API service over its store (store/: SQLite or PostgreSQL, migrations), the
`edge-verifier hub` server and its config, the sealed face crops and re-embedding with another
pack, and the store audit. It may import edge.core, edge.api, edge.vision and edge.modelpack; never
edge.daemon (an edge reaches the hub over HTTP only), edge.dev or edge.bench (pyproject.toml's
import contracts check it)."""
