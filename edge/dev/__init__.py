"""Development tools: the demo, the dev stack (a broker, a hub and a daemon as local processes), a
throwaway PostgreSQL cluster, and where the photos and a free port are. Used by `edge-verifier
demo`, the benchmarks and the tests; nothing the hub or the edge runs imports it. It may import
every package below it (edge.hub, edge.daemon, edge.modelpack, edge.api, edge.vision, edge.core),
never edge.bench or edge.cli (pyproject.toml's import contracts check it)."""
