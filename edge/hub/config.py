"""The hub's settings (`edge-verifier hub --config FILE`), declared once with their defaults.

Secrets may live in a separate TOML (`secrets_file`) holding `[[credentials]]` tables and the
face crop key (`[face_crops] key`, edge.hub.face_crops); the hub refuses to start when that file
can be read by group or others, as ssh does with keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from edge.api.ops import ApiLimits, check_ident
from edge.api.serving import ListenerSettings
from edge.api.urlfetch import FetchSettings
from edge.core.errors import ApiError
from edge.core.settings import (
    ConfigError,
    DecidingRole,
    Section,
    ThresholdOverrides,
    load_settings,
    problems,
    read_toml,
    render_example,
    require_private,
    require_usable_key,
)
from edge.core.signature import Credential
from edge.hub.face_crops import read_crop_key
from edge.hub.store.base import Limits
from edge.vision.packs import Pack


class ServerSection(ListenerSettings):
    port: int = Field(8090, ge=1, le=65535, description="TCP port of the face API.")


class StorageSection(Section):
    path: str = Field("/var/lib/edge-verifier-hub/hub.sqlite3",
                      description="SQLite database file (WAL mode), used when url is empty.")
    url: str = Field("", description="postgresql://USER@HOST:PORT/DATABASE to share one database between several hub\n"
                     "processes (schema created and migrated at start; password from ~/.pgpass or\n"
                     "EDGE_VERIFIER_STORAGE__URL); empty: SQLite at path.")
    verify_log_days: float = Field(30.0, gt=0, description="Verify log rows (session_id, score, decision) older than\n"
                                   "this are deleted (at the rate limit one appid logs ~4 M rows a day).")
    access_log_days: float = Field(365.0, ge=0, description="The edges' access log records (and their sealed face "
                                   "crops) received longer ago than\nthis are deleted (0: kept for good; by the hub's "
                                   "clock, not the door's); each\nedge's chain head stays, so its next upload is "
                                   "checked as ever.")
    keep_face_crops: bool = Field(
        True, description="Keep each enrolled face's aligned 112x112 crop, AES-GCM encrypted with the\n"
        "[face_crops] key of secrets_file (`edge-verifier hub keygen` adds one), so that\n"
        "`edge-verifier hub reembed` can move the faces to another model pack without new\n"
        "photos. false: no image of any kind is kept (such faces must be enrolled again\n"
        "after a change of embedder).")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if url and not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("expected sqlite:///PATH or postgresql://...")
        return url


class CredentialSection(Section):
    appid: str = Field(description="Application id the key belongs to (sent as `appid`).")
    secret_id: str = Field(description="Public key id (`k=` in the signature).")
    secret_key: str = Field(description="Shared secret of the HMAC-SHA1 signature; generate one, e.g. with\n"
                            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'.\n"
                            "Keep it out of shared files.")
    edge_id: str = Field(
        "", description="Bind the key to one edge: the id that edge uploads its access log under\n"
        "(`edge-verifier edge-id` on it). Such a key syncs, asks the cloud fallback, uploads and\n"
        "reports for that edge only and pulls model packs; every other call is refused (-1530), so\n"
        "a door's stolen key cannot enrol anyone (`edge-verifier hub edgekey` adds one). Empty: the\n"
        "key may do anything for its appid (an operator's or an enrolment tool's key).")
    groups: tuple[str, ...] = Field(
        (), description="With edge_id: the groups that edge serves ([identify] groups there). Its key then\n"
        "syncs those groups only and the cloud fallback verifies their persons only: a door's\n"
        "key taken holds the faces and cards of the people who may pass that door, not the\n"
        "site's. Empty: every group.")

    @model_validator(mode="after")
    def _usable_key(self) -> "CredentialSection":
        require_usable_key(self.secret_key, f"appid {self.appid}")
        if self.groups and not self.edge_id:
            raise ValueError("groups bind an edge's key: set edge_id too (a key of the whole appid serves every group)")
        # the face API's id rules: the edge reports its id and asks for its groups as ids
        for name, value in ([("edge_id", self.edge_id)] if self.edge_id else []) + [("groups", g) for g in self.groups]:
            try:
                check_ident(name, value, ApiLimits().id_bytes)
            except ApiError as exc:
                raise ValueError(f"{name} {value!r}: {exc.message}") from None
        return self


class ConsoleSection(Section):
    enabled: bool = Field(True, description="Serve the web console under /ui/ (docs/console.md).")
    tls_proxy: bool = Field(
        False, description="The hub is reached through a reverse proxy that terminates TLS: the console's\n"
        "cookie is then __Host- and Secure although the hub itself serves plain http. Without\n"
        "TLS (here or at a proxy) the console is served on a loopback address only.")
    idle_minutes: float = Field(30.0, gt=0, description="A session unused this long ends.")
    absolute_hours: float = Field(12.0, gt=0, description="A session ends this long after its login, used or not.")
    static_dir: str = Field("", description="Where `edge-verifier ui fetch` put htmx and the stylesheet; empty = the\n"
                            "models directory's ui/ (the pages work without them, unstyled).")


class HubLimits(ApiLimits, Limits):  # this order lists the count limits first
    """The hub's [limits]: the store's count limits and the HTTP layer's size and rate limits."""


class VisionSection(Section):
    models_dir: str = Field("", description="Built model pack directory; empty = the package's models/.")
    precision: Pack = Field("int8", description="Model pack for matching: the edges' pack (so sync works): int8,\n"
                            "fp32, int8-lite, fp32-lite or int8-mirror; [matching] defaults to its calibrated\n"
                            "thresholds.")
    also_embed: list[Pack] = Field(
        default_factory=list,
        description="Extra precisions whose embeddings are also stored, for edges running another pack.",
    )
    threads: int = Field(
        1, ge=0,
        description="Inference threads per model; 0 = onnxruntime's default (all cores). 1 suits a server:\n"
        "concurrent requests then share the cores (bench hub, 2 cores, 4 clients: 35 rps vs 19 rps).",
    )


class LivenessSection(Section):
    mode: Literal["require", "flag", "off"] = Field(
        "flag", description="Presentation-attack detection on /face/verify and /face/identify (one image: one\n"
        "frame, its x2.7 context crop): flag adds the verdict to the answer (data.liveness); require\n"
        "also refuses an attack, or a face it cannot judge, with code -1110; off skips it (docs/hub.md).")


class HubSettings(DecidingRole):
    THRESHOLDS_SECTION = "matching"

    server: ServerSection = Field(default_factory=ServerSection, description="HTTP listener.")
    storage: StorageSection = Field(default_factory=StorageSection,
                                    description="Where persons, faces and logs are kept.")
    credentials: list[CredentialSection] = Field(
        default_factory=list, description="One table per API key. Prefer secrets_file for the keys."
    )
    secrets_file: str = Field(
        "", description="TOML file with more [[credentials]] tables; must not be readable by group/others.")
    limits: HubLimits = Field(default_factory=HubLimits, description="Count, size and rate limits.")
    url_fetch: FetchSettings = Field(default_factory=FetchSettings,
                                     description="Server-side download of `url` inputs.")
    vision: VisionSection = Field(default_factory=VisionSection, description="Face models used by the hub.")
    liveness: LivenessSection = Field(default_factory=LivenessSection,
                                      description="Is the face on an API call live, or a print or a screen?")
    console: ConsoleSection = Field(default_factory=ConsoleSection,
                                    description="The web console under /ui/ (docs/console.md).")
    matching: ThresholdOverrides = Field(
        default_factory=ThresholdOverrides,
        description="Decision thresholds; the defaults are the calibrated ones of edge.core.matcher,\n"
        "measured on LFW (docs/models.md#thresholds).",
    )

    # a PostgreSQL password in [storage] url is the key to every face and card (the docs keep it
    # in ~/.pgpass; hub.toml may then be readable by others)
    SECRET_URLS: ClassVar[tuple[tuple[str, str], ...]] = (("storage", "url"),)

    def holds_secrets(self) -> bool:
        return bool(self.credentials)

    def face_crop_key(self) -> bytes | None:
        """The `[face_crops] key` of secrets_file, None when there is none."""
        return read_crop_key(self.secrets_file) if self.secrets_file else None

    def all_credentials(self) -> list[Credential]:
        """Credentials of the config plus those of `secrets_file` (checked for permissions)."""
        creds = [Credential(**c.model_dump()) for c in self.credentials]
        if self.secrets_file:
            creds += read_secrets_file(self.secrets_file)
        return creds


def read_secrets_file(path: str | Path) -> list[Credential]:
    path = Path(path)
    require_private(path, "secrets file")
    data = read_toml(path)
    extra = set(data) - {"credentials", "face_crops"}
    if extra:
        raise ConfigError(f"{path}: only [[credentials]] and [face_crops] belong in a secrets file, "
                          f"found {sorted(extra)}")
    try:
        return [Credential(**CredentialSection(**_without_empty_calls(c)).model_dump())
                for c in data.get("credentials", [])]
    except ValidationError as exc:  # its own text would quote the table, secret_key and all
        raise ConfigError(f"{path}: invalid credentials: {problems(exc)}") from None
    except TypeError:  # an entry that is no table
        raise ConfigError(f"{path}: invalid credentials: each [[credentials]] must be a table") from None


def _without_empty_calls(entry):
    """`hub edgekey` of 2026-12-07 wrote `calls = []` into each key it added (a field of the edge's
    local API keys, which a hub key has not): taken as absent, so that those files still load."""
    if isinstance(entry, dict) and entry.get("calls") == []:
        return {k: v for k, v in entry.items() if k != "calls"}
    return entry


def load(path: str | Path | None, **overrides) -> HubSettings:
    return load_settings(HubSettings, path, **overrides)


def example_toml() -> str:
    text = render_example(
        HubSettings,
        "edge-verifier hub configuration (edge-verifier hub --config FILE)",
        {
            "credentials.appid": "1000001",
            "credentials.secret_id": "AKIDexampleexampleexample",
            "credentials.secret_key": "",
            # HTTPS by default: face photos and signatures must not cross the network in the clear;
            # empty both behind a reverse proxy that terminates TLS
            "server.tls_cert": "/etc/edge-verifier/tls/hub.pem",
            "server.tls_key": "/etc/edge-verifier/tls/hub.key",
        },
    )
    # render_example prints sections only; the one top-level key must precede every table.
    head, _, rest = text.partition("\n\n")
    field = HubSettings.model_fields["secrets_file"]
    top = f"# {field.description}\n# secrets_file = \"/etc/edge-verifier/hub-secrets.toml\"\n"
    return f"{head}\n\n{top}\n{rest}"
