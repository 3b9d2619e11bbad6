"""The hub's settings (`edge-verifier hub --config FILE`), declared once with their defaults.

Secrets may live in a separate TOML (`secrets_file`) holding `[[credentials]]` tables; the hub
refuses to start when that file can be read by group or others, as ssh does with keys.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from edge.api.serving import ListenerSettings
from edge.matcher import Thresholds, thresholds_for
from edge.settings import ConfigError, RoleSettings, load_settings, read_toml, render_example, require_private
from edge.signature import Credential
from edge.vision.packs import Pack


class ServerSection(ListenerSettings):
    port: int = Field(8090, ge=1, le=65535, description="TCP port of the face API.")


class StorageSection(BaseModel):
    path: str = Field("/var/lib/edge-verifier-hub/hub.sqlite3", description="SQLite database file (WAL mode).")
    verify_log_days: float = Field(30.0, gt=0, description="Verify log rows (session_id, score, decision) older than\n"
                                   "this are deleted (at the rate limit one appid logs ~4 M rows a day).")


# Keys that were printed in examples or docs: anyone can sign with them, so they are refused.
KNOWN_EXAMPLE_KEYS = frozenset({"change-me-32-random-characters--", "...", "change-me", "secret", "SecretKey"})


class CredentialSection(BaseModel):
    appid: str = Field(description="Application id the key belongs to (sent as `appid`).")
    secret_id: str = Field(description="Public key id (`k=` in the signature).")
    secret_key: str = Field(description="Shared secret of the HMAC-SHA1 signature; generate one, e.g. with\n"
                            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'.\n"
                            "Keep it out of shared files.")

    @model_validator(mode="after")
    def _usable_key(self) -> "CredentialSection":
        if not self.secret_key.strip():
            raise ValueError(f"secret_key of appid {self.appid} is empty: generate one")
        if self.secret_key in KNOWN_EXAMPLE_KEYS:
            raise ValueError(f"secret_key of appid {self.appid} is a published example key: generate one")
        return self


class LimitsSection(BaseModel):
    faces_per_person: int = Field(20, ge=1, description="Faces per person (code -1309 beyond).")
    persons_per_group: int = Field(20000, ge=1, description="Persons per group (code -1310 beyond).")
    groups_per_appid: int = Field(5000, ge=1, description="Groups per appid (code -1311 beyond).")
    body_bytes: int = Field(1_572_864, ge=1024,
                            description="Largest request body in bytes, refused while reading (code 23).")
    body_timeout_s: float = Field(30.0, gt=0,
                                  description="A request body slower than this to arrive is abandoned (code 3).")
    rate_per_s: float = Field(50.0, ge=0,
                              description="Sustained requests per second per appid (code 15 beyond); 0 = unlimited.")
    burst: int = Field(100, ge=1, description="Requests an appid may send at once before the rate applies.")
    id_bytes: int = Field(128, ge=1, description="Longest person_id / group_id / face_id in UTF-8 bytes (code -1304).")
    text_bytes: int = Field(1024, ge=1, description="Longest person_name / tag in UTF-8 bytes (code -1304).")


class UrlFetchSection(BaseModel):
    connect_timeout_s: float = Field(3.0, gt=0, description="Connect timeout of a url image download.")
    total_timeout_s: float = Field(10.0, gt=0, description="Whole download time limit (code -1403 beyond).")
    max_redirects: int = Field(3, ge=0, le=10, description="Redirects followed, each address re-checked.")
    allow: list[str] = Field(
        default_factory=list,
        description="Hosts or CIDRs that may be fetched although private/loopback/link-local\n"
        "(e.g. [\"10.0.0.0/8\", \"images.internal\", \"images.internal:8080\"]); a host name without\n"
        "a port opens ports 80 and 443 only. Empty: public addresses only.",
    )
    per_appid: int = Field(8, ge=1, description="url downloads of one appid at once; more wait (at most\n"
                           "total_timeout_s, then -1403).")
    max_in_flight: int = Field(32, ge=1, description="url downloads at once over all appids (/health says\n"
                               "degraded when all are busy).")


class VisionSection(BaseModel):
    models_dir: str = Field("", description="Built model pack directory; empty = the package's models/.")
    precision: Pack = Field("int8", description="Model pack for matching: the edges' pack (so sync works): int8,\n"
                            "fp32, int8-lite or fp32-lite; [matching] defaults to its calibrated thresholds.")
    also_embed: list[Pack] = Field(
        default_factory=list,
        description="Extra precisions whose embeddings are also stored, for edges running another pack.",
    )
    threads: int = Field(
        1, ge=0,
        description="Inference threads per model; 0 = onnxruntime's default (all cores). 1 suits a server:\n"
        "concurrent requests then share the cores (bench hub, 2 cores, 4 clients: 35 rps vs 19 rps).",
    )


class MatchingSection(BaseModel):
    accept: float | None = Field(None, ge=-1, le=1,
                                 description="Cosine score at or above which verify answers "
                                 "ismatch=true (confidence 70);\nunset: the one calibrated for [vision] precision.")
    reject: float | None = Field(None, ge=-1, le=1,
                                 description="Cosine score mapped to confidence 40; unset: the one calibrated for\n"
                                 "[vision] precision.")


class HubSettings(RoleSettings):
    server: ServerSection = Field(default_factory=ServerSection, description="HTTP listener.")
    storage: StorageSection = Field(default_factory=StorageSection,
                                    description="Where persons, faces and logs are kept.")
    credentials: list[CredentialSection] = Field(
        default_factory=list, description="One table per API key. Prefer secrets_file for the keys."
    )
    secrets_file: str = Field(
        "", description="TOML file with more [[credentials]] tables; must not be readable by group/others.")
    limits: LimitsSection = Field(default_factory=LimitsSection, description="Count, size and rate limits.")
    url_fetch: UrlFetchSection = Field(default_factory=UrlFetchSection,
                                       description="Server-side download of `url` inputs.")
    vision: VisionSection = Field(default_factory=VisionSection, description="Face models used by the hub.")
    matching: MatchingSection = Field(
        default_factory=MatchingSection,
        description="Decision thresholds; the defaults are the calibrated ones of edge.matcher "
        "(README \"Thresholds\").",
    )

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> "HubSettings":
        t = self.thresholds()
        if t.reject > t.accept:
            raise ValueError(f"matching.reject ({t.reject}) must not exceed matching.accept ({t.accept})")
        return self

    def thresholds(self) -> Thresholds:
        """The matching thresholds: those calibrated for the pack, with the configured overrides."""
        return thresholds_for(self.vision.precision, self.matching.accept, self.matching.reject)

    def holds_secrets(self) -> bool:
        return bool(self.credentials)

    def all_credentials(self) -> list[Credential]:
        """Credentials of the config plus those of `secrets_file` (checked for permissions)."""
        creds = [Credential(c.appid, c.secret_id, c.secret_key) for c in self.credentials]
        if self.secrets_file:
            creds += read_secrets_file(self.secrets_file)
        return creds


def read_secrets_file(path: str | Path) -> list[Credential]:
    path = Path(path)
    require_private(path, "secrets file")
    data = read_toml(path)
    extra = set(data) - {"credentials"}
    if extra:
        raise ConfigError(f"{path}: only [[credentials]] tables belong in a secrets file, found {sorted(extra)}")
    try:
        return [Credential(**CredentialSection(**c).model_dump()) for c in data.get("credentials", [])]
    except Exception as exc:  # pydantic ValidationError or a non-table entry
        raise ConfigError(f"{path}: invalid credentials: {exc}") from None


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
        },
    )
    # render_example prints sections only; the one top-level key must precede every table.
    head, _, rest = text.partition("\n\n")
    field = HubSettings.model_fields["secrets_file"]
    top = f"# {field.description}\n# secrets_file = \"/etc/edge-verifier/hub-secrets.toml\"\n"
    return f"{head}\n\n{top}\n{rest}"
