"""Loading typed settings from TOML with environment overrides, and printing examples.

Each role declares its settings once as pydantic models (`edge.hub.config.HubSettings`,
`edge.daemon.config.EdgeSettings`), composed of the models that the code using a setting
declares beside it (`edge.hub.store.Limits`, `edge.api.ops.ApiLimits`, `edge.api.urlfetch.FetchSettings`):
field defaults and descriptions are the documentation, `render_example` turns them into the
commented TOML that `edge-verifier config example` prints, and a wrong value fails at start-up
with the key's path in the message.

Environment overrides: `EDGE_VERIFIER_<SECTION>__<KEY>`, e.g. `EDGE_VERIFIER_MQTT__HOST=broker`
(list-of-table sections such as `credentials` take JSON).
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from edge.core.matcher import Thresholds, thresholds_for
from edge.core.redact import holds_password

ENV_PREFIX = "EDGE_VERIFIER_"

S = TypeVar("S", bound=BaseSettings)


class ConfigError(Exception):
    """A configuration file or value that cannot be used; the message names the key."""


class Section(BaseModel):
    """A section of a role's settings: a key it does not know is refused at start with its path,
    like an unknown section. It was dropped without a word: `call = ["claim"]` for `calls` left a
    badge reader's key with every call, `[liveness] mod = "require"` left attacks unrefused,
    `[[credentials]] edgeid` gave a door a key for the whole appid."""

    model_config = ConfigDict(extra="forbid")


class RoleSettings(BaseSettings):
    """Base for a role's settings: TOML file values, overridden by environment variables."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the file (passed as init kwargs): operators override one key
        # in a systemd drop-in without editing the file.
        return (env_settings, init_settings)

    # (section, key) of the urls this role reads, whose password (if the file writes one in
    # them) makes the file a secret; judged on the file's own values: one given by an
    # environment variable (a root-only drop-in) is not the file's
    SECRET_URLS: ClassVar[tuple[tuple[str, str], ...]] = ()

    def holds_secrets(self) -> bool:
        """True if these settings carry a secret key: their file must then be private."""
        return False


def systemd_credential(path: str | Path) -> bool:
    """Is `path` one of this service's systemd credentials (LoadCredential=, in
    $CREDENTIALS_DIRECTORY)? Only the service can read those, whatever their mode says: systemd
    252 makes them 0400 and chowns them, 254 and later on a tmpfs give the service user an ACL
    entry instead, which `stat` shows as 0440 (the group bits are the ACL's mask)."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return False
    try:
        return Path(path).resolve().parent == Path(directory).resolve()
    except OSError:
        return False


def require_private(path: str | Path, what: str, instead: str = "") -> None:
    """ConfigError unless `path` exists and is not accessible by group or others (chmod 600),
    or is one of the service's systemd credentials; `instead`: what else the message offers."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and not systemd_credential(path):
        raise ConfigError(f"{path}: {what} holds a secret (a key or a password) but is accessible by group/others "
                          f"(mode {stat.S_IMODE(mode):o}); chmod 600 it, owned by the service's user"
                          + (f", {instead}" if instead else ""))


def private_folder(path: Path) -> None:
    """`path` made 0700 whatever the umask (docs/security.md: its files' names and sizes say
    which keys there are and how busy a door's log is); one made before, by an older release
    with the umask's 0755 and owned by this process, loses others' access (a unit's
    StateDirectoryMode=0750 keeps its group's)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_mode & stat.S_IRWXO and st.st_uid == os.geteuid():
        path.chmod(stat.S_IMODE(st.st_mode) & ~stat.S_IRWXO)


def append_private(path: str | Path, block: str) -> None:
    """`block` added at the end of the private file `path` (created 0600, a new directory 0700),
    whole or not at all (`write_private`)."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    write_private(path, (f"{text.rstrip()}\n\n" if text.strip() else "") + block)


def make_private_once(path: Path, text: str) -> bool:
    """Write `text` as the new private file `path` (0600, a new directory 0700, synced) unless
    it exists; True when made here. O_EXCL: two starts at once make one file, never half of two."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def refuse_readable_by_others(path: Path) -> None:
    """ConfigError when group or others may read the key file `path`."""
    mode = path.stat().st_mode
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by others (mode {mode & 0o777:o}): chmod 600 it")


def write_private(path: str | Path, text: str) -> None:
    """`text` as the private file `path` (0600, a new directory 0700), whole or not at all:
    written beside it, synced, renamed over it, the directory synced (a crash leaves the old
    file or the new one, never half of one; a failed write leaves no temporary file)."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.new")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a leftover of an interrupted write keeps its mode otherwise
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


# Keys printed in the example configs or the docs (`config example hub|edge`): anyone can sign
# with them, so neither role accepts one for any credential it holds.
KNOWN_EXAMPLE_KEYS = frozenset({"change-me-32-random-characters--", "...", "\u2026", "change-me", "secret",
                                "SecretKey"})  # \u2026: the docs' "…"


def refuse_example_key(secret_key: str, whose: str) -> None:
    """ValueError (a config error naming `whose`, never the key) for a published example key."""
    if secret_key.strip() in KNOWN_EXAMPLE_KEYS:
        raise ValueError(f"secret_key of {whose} is a published example key: generate one")


def require_usable_key(secret_key: str, whose: str) -> None:
    """`refuse_example_key`, and an empty key refused too: an HMAC under it is anyone's."""
    if not secret_key.strip():
        raise ValueError(f"secret_key of {whose} is empty: generate one")
    refuse_example_key(secret_key, whose)


class ThresholdOverrides(Section):
    """Moves the decision thresholds calibrated for the role's model pack ([vision] precision)."""

    accept: float | None = Field(None, ge=-1, le=1,
                                 description="Cosine score at or above which a face is accepted (confidence 70;\n"
                                 "verify answers ismatch=true); unset: the one calibrated for [vision] precision.")
    reject: float | None = Field(None, ge=-1, le=1,
                                 description="Cosine score below which a face is rejected (confidence 40);\n"
                                 "unset: the one calibrated for [vision] precision.")


class DecidingRole(RoleSettings):
    """A role deciding on cosine scores: the thresholds calibrated for its [vision] precision, moved
    by its ThresholdOverrides section named `THRESHOLDS_SECTION`. Out of order fails at start."""

    THRESHOLDS_SECTION: ClassVar[str]
    if TYPE_CHECKING:  # each role declares its own [vision] section (a pydantic field of its own)
        vision: Any

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> "DecidingRole":
        self.thresholds()
        return self

    def identify_false_admit_rate(self) -> float | None:
        """The role's [identify] false_admit_rate (edge.core.false_admit); None: identify accepts at
        the 1:1 threshold (the hub, whose /face/identify only ranks candidates)."""
        return None

    def identify_rule(self) -> str:
        """The role's [identify] rule (edge.core.false_admit.IDENTIFY_RULES): "best" unless set."""
        return "best"

    def thresholds(self) -> Thresholds:
        """The matching thresholds: those calibrated for the pack, with the configured overrides."""
        section = self.THRESHOLDS_SECTION
        overrides: ThresholdOverrides = getattr(self, section)
        t = thresholds_for(self.vision.precision, overrides.accept, overrides.reject,
                           self.identify_false_admit_rate(), rule=self.identify_rule())
        if t.reject > t.accept:
            raise ValueError(f"{section}.reject ({t.reject}) must not exceed {section}.accept ({t.accept})")
        return t


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except PermissionError:
        raise ConfigError(f"{path}: user {os.geteuid()} may not read it: the file must be readable by the "
                          "service's user (its owner, or by a group of its)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def problems(exc: ValidationError, file_values: dict[str, Any] | None = None) -> str:
    """Where and what, never the input: pydantic's own text quotes the values it was given, and a
    table of settings holds keys. An unknown key that is not in `file_values` came from the
    environment: its variable is named (it was blamed on the file, where nobody found it)."""
    def where(err) -> str:
        path = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden" and file_values is not None and not _holds(file_values, err["loc"]):
            return f"{_variable_of(err['loc'])} (environment): {path}"
        return path
    return "; ".join(": ".join(filter(None, (where(err), err["msg"]))) for err in exc.errors())


def _variable_of(loc: tuple) -> str:
    """The variable that set `loc`: the longest of its prefixes set (a JSON-valued
    EDGE_VERIFIER_DOOR='{...}' holds the key), else the one that would name it alone."""
    names = [ENV_PREFIX + "__".join(str(p) for p in loc[:n]).upper() for n in range(len(loc), 0, -1)]
    present = {name.upper() for name in os.environ}
    return next((name for name in names if name in present), names[0])


def _holds(values: Any, loc: tuple) -> bool:
    for part in loc:
        if isinstance(values, dict) and part in values:
            values = values[part]
        elif isinstance(values, list) and isinstance(part, int) and 0 <= part < len(values):
            values = values[part]
        else:
            return False
    return True


def load_settings(cls: type[S], path: str | Path | None, **overrides: Any) -> S:
    """Build `cls` from the TOML file at `path` (optional), env overrides, then `overrides`."""
    values = read_toml(path) if path else {}
    values.update(overrides)
    try:
        settings = cls(**values)
    except ValidationError as exc:
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}invalid configuration: {problems(exc, values)}") from None
    if path and isinstance(settings, RoleSettings):
        if settings.holds_secrets():
            require_private(path, "config file")
        for section, key in settings.SECRET_URLS:
            url = (values.get(section) or {}).get(key) if isinstance(values.get(section), dict) else None
            if isinstance(url, str) and holds_password(url):
                require_private(path, f"config file ([{section}] {key} holds a password)", instead=(
                    "or take the password out of it: ~/.pgpass or PGPASSFILE for PostgreSQL (the hub units' "
                    "LoadCredential=hub-pgpass), an EDGE_VERIFIER_" f"{section.upper()}__{key.upper()} variable "
                    "in a root-only drop-in"))
    return settings


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if value is None:
        return '""'
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str | None) -> list[str]:
    return [f"# {line}".rstrip() for line in (text or "").splitlines()]


def render_example(cls: type[BaseModel], title: str, examples: dict[str, Any] | None = None) -> str:
    """Commented TOML for every field of `cls`; `examples` maps 'section.key' to a shown value."""
    examples = examples or {}
    lines = [f"# {title}", f"# Every key can be overridden by {ENV_PREFIX}<SECTION>__<KEY>.", ""]
    for section, field in cls.model_fields.items():
        sub = field.annotation
        is_list = getattr(sub, "__origin__", None) is list
        model = get_args(sub)[0] if is_list else sub
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        lines += _comment(field.description)
        lines += _example_table(model, section, is_list, examples)
    return "\n".join(lines)


def _example_table(model: type[BaseModel], section: str, is_list: bool, examples: dict[str, Any]) -> list[str]:
    """One table of the example; a field that is itself a model (`[door.osdp]`) follows as a
    sub-table, after the table's own keys (TOML wants them there)."""
    lines = [f"[[{section}]]" if is_list else f"[{section}]"]
    instance = model.model_construct() if not is_list else None
    subtables: list[str] = []
    for key, sub_field in model.model_fields.items():
        if isinstance(sub_field.annotation, type) and issubclass(sub_field.annotation, BaseModel):
            subtables += _comment(sub_field.description)
            subtables += _example_table(sub_field.annotation, f"{section}.{key}", False, examples)
            continue
        lines += _comment(sub_field.description)
        shown = examples.get(f"{section}.{key}")
        if shown is None and instance is not None:
            shown = getattr(instance, key, None)
        if shown is None and sub_field.default is not None:
            shown = sub_field.default
        # An option whose default is None is an override: shown commented out, so that
        # copying the example never overrides a default by accident.
        optional = sub_field.default is None and not sub_field.is_required()
        if optional and shown is None:
            lines.append(f"# {key} =")
        else:
            lines.append(f"{'# ' if optional else ''}{key} = {_toml_value(shown)}")
    lines.append("")
    return lines + subtables

