"""The sources file: which Singer taps the platform runs for which tenant, and how.

One YAML file (`CDP_SOURCES_FILE`, default `<state dir>/sources.yaml`) lists tenants and their
sources. A source's tap config may refer to secrets as `${VAR}` (an environment variable, inside
any string) or `{file: path}` (a whole value read from a file); references are expanded only when
the tap runs (`expand_config`), so the declarations, logs and errors never hold a secret.
"""

import hashlib
import hmac
import os
import re
from pathlib import Path
from typing import Literal

import yaml
from dagster import ScheduleDefinition, define_asset_job
from packaging.requirements import InvalidRequirement, Requirement
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cdp_resources.settings import state_dir

NAME = r"^[a-z][a-z0-9_]*$"
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Defaults: an HTTP 401/403 as HTTP clients word it (not any "401" in a log line, which may be a
# count), unauthorized/forbidden, and PostgreSQL's and MySQL's refusal of a login.
AUTH_FAILURE_PATTERNS = (
    r"\b(401|403) (Client Error|Unauthorized|Forbidden)",
    r"(?i)\b(HTTP|status)( code)?[ :=]*(401|403)\b",
    r"(?i)\b(unauthori[sz]ed|forbidden)\b",
    r"(?i)password authentication failed",
    r"(?i)access denied for user",
)


class SourcesFileError(ValueError):
    """The sources file cannot be read or breaks a rule; the message names the place."""


class SecretReferenceError(ValueError):
    """A `${VAR}` or `{file: path}` reference that cannot be expanded (names the reference, not a value)."""


class StreamMapping(BaseModel):
    """Where one tap stream lands, and how the tap replicates it."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(description="the registry stream `provider/stream` its records land in")
    replication_method: str | None = Field(
        default=None, description="INCREMENTAL, FULL_TABLE or LOG_BASED, set in the catalog's metadata"
    )
    replication_key: str | None = Field(default=None, description="the bookmark field of INCREMENTAL replication")

    @field_validator("to")
    @classmethod
    def _provider_and_stream(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*/[a-z][a-z0-9_]*", value):
            raise ValueError(f"'{value}' is not a registry stream 'provider/stream'")
        return value

    @model_validator(mode="after")
    def _incremental_needs_key(self) -> "StreamMapping":
        if self.replication_method == "INCREMENTAL" and not self.replication_key:
            raise ValueError("INCREMENTAL replication needs a replication_key")
        return self

    @property
    def provider(self) -> str:
        return self.to.split("/")[0]

    @property
    def stream(self) -> str:
        return self.to.split("/")[1]


class Source(BaseModel):
    """One tap run for one tenant."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = ""
    name: str = ""
    tap: str = Field(description="pip requirement pinned to one version: `package==1.2.3` (or `package @ url`)")
    executable: str | None = Field(default=None, description="the tap's command; default: the package's `tap-*` script")
    overrides: list[str] = Field(
        default_factory=list,
        description="pip requirements that replace the tap's own pins of those packages (uv's --override), e.g. "
        "a later release of a pinned dependency that has wheels for this Python",
    )
    config: dict = Field(default_factory=dict, description="the tap's config, with secret references")
    catalog_option: Literal["--catalog", "--properties"] = Field(
        default="--catalog", description="how the tap takes its catalog (older taps: --properties)"
    )
    streams: dict[str, StreamMapping] = Field(min_length=1, description="tap stream id -> where it lands")
    schedule: str | None = Field(default=None, description="cron (UTC); none: materialised by hand only")
    timeout_minutes: float = Field(default=30, gt=0)
    retries: int = Field(default=2, ge=0)
    retry_backoff_seconds: float = Field(default=30, ge=0, description="first wait; doubles at each retry")
    auth_failure_patterns: list[str] = Field(default_factory=lambda: list(AUTH_FAILURE_PATTERNS))
    owner: str | None = Field(default=None, description="Dagster owner: an email or `team:name`")
    description: str | None = None

    @field_validator("tap")
    @classmethod
    def _pinned(cls, value: str) -> str:
        try:
            requirement = Requirement(value)
        except InvalidRequirement as error:
            raise ValueError(f"'{value}' is not a pip requirement: {error}") from None
        pinned = requirement.url or (
            len(requirement.specifier) == 1 and next(iter(requirement.specifier)).operator in ("==", "===")
        )
        if not pinned:
            raise ValueError(f"'{value}' is not pinned to one version (write {requirement.name}==<version>)")
        return value

    @field_validator("overrides")
    @classmethod
    def _requirements(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                Requirement(item)
            except InvalidRequirement as error:
                raise ValueError(f"'{item}' is not a pip requirement: {error}") from None
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                # Dagster's own check, so a schedule the file accepts is one Dagster accepts.
                ScheduleDefinition(name="check", cron_schedule=value, job=define_asset_job("check"))
            except Exception as error:
                raise ValueError(f"'{value}' is not a cron schedule: {error}") from None
        return value

    @field_validator("auth_failure_patterns")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"'{pattern}' is not a regular expression: {error}") from None
        return value

    @model_validator(mode="after")
    def _one_provider(self) -> "Source":
        providers = {mapping.provider for mapping in self.streams.values()}
        if len(providers) > 1:
            raise ValueError(f"the streams land in several providers {sorted(providers)}: declare one source each")
        return self

    @property
    def requirement(self) -> Requirement:
        return Requirement(self.tap)

    @property
    def provider(self) -> str:
        return next(iter(self.streams.values())).provider

    @property
    def key(self) -> str:
        return f"{self.tenant}/{self.name}"

    def fingerprint(self, expanded_config: dict, salt: bytes) -> str:
        """A salted, slow hash of what decides whether the tap can log in (package and expanded config),
        so a pause can tell a changed config without the pause storing the secret or a cheap hash of it."""
        canonical = yaml.safe_dump({"tap": self.tap, "config": expanded_config}, sort_keys=True).encode()
        return hashlib.pbkdf2_hmac("sha256", canonical, salt, 100_000).hex()

    def same_fingerprint(self, expanded_config: dict, salt: bytes, fingerprint: str) -> bool:
        return hmac.compare_digest(self.fingerprint(expanded_config, salt), fingerprint)


class Tenant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: dict[str, Source] = Field(default_factory=dict)


class SourcesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenants: dict[str, Tenant] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self) -> "SourcesFile":
        for tenant, declared in self.tenants.items():
            for name, source in declared.sources.items():
                for what, value in (("tenant", tenant), ("source", name)):
                    if not re.fullmatch(NAME, value):
                        raise ValueError(f"{what} name '{value}' must match {NAME} (it names Dagster jobs)")
                source.tenant, source.name = tenant, name
        return self

    def sources(self) -> list[Source]:
        return [source for tenant in self.tenants.values() for source in tenant.sources.values()]


def sources_file_path() -> Path:
    return Path(os.environ.get("CDP_SOURCES_FILE") or state_dir() / "sources.yaml")


def load_sources(path: Path | None = None) -> list[Source]:
    """Every declared source of the file (none when the file does not exist); `SourcesFileError` if invalid."""
    path = path or sources_file_path()
    if not path.exists():
        return []
    try:
        document = yaml.safe_load(path.read_text()) or {}
        return SourcesFile.model_validate(document).sources()
    except yaml.YAMLError as error:
        raise SourcesFileError(f"{path}: not YAML: {error}") from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or '(top)'}: {problem['msg']}"
            for problem in error.errors(include_input=False)
        )
        raise SourcesFileError(f"{path}: {problems}") from None


def expand_config(value: object, where: str = "config") -> object:
    """`value` with every `${VAR}` and `{file: path}` replaced by the secret it names."""
    if isinstance(value, dict):
        if set(value) == {"file"}:
            path = Path(os.path.expanduser(str(value["file"])))
            try:
                return path.read_text().strip()
            except OSError as error:
                raise SecretReferenceError(f"{where}: cannot read secret file {path}: {error.strerror}") from None
        return {key: expand_config(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [expand_config(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, str):

        def variable(match: re.Match) -> str:
            if match.group(1) not in os.environ:
                raise SecretReferenceError(f"{where}: environment variable {match.group(1)} is not set")
            return os.environ[match.group(1)]

        return VARIABLE.sub(variable, value)
    return value
