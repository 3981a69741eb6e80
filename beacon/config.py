"""Beacon's settings: one typed object, read from ``BEACON_*`` variables and an optional ``.env``.

Every process (gateway, worker, API, the local services and the operations commands) reads
this same class, so a name means the same thing everywhere. Secrets are ``SecretStr`` and are
never logged. Defaults work on a laptop: local Kafka, local registry, SQLite in the data dir.

The settings are grouped by what they configure (``settings.kafka.bootstrap``,
``settings.topics.inbound``; the sections live in ``beacon.config_sections``), while each keeps
its one flat variable (``BEACON_KAFKA_BOOTSTRAP``, ``BEACON_TOPIC_IN``). Code that builds or derives
settings may use the same flat names: ``Settings(kafka_bootstrap=...)`` and
``settings.replace(kafka_bootstrap=..., topic_in=...)`` (a validated copy).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, SecretStr, create_model, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from beacon.config_channels import BridgeSettings, NostrSettings, TelegramSettings, WebChatSettings, WhatsAppSettings
from beacon.config_sections import (
    ApiSettings,
    ConsoleSettings,
    DatabaseSettings,
    GatewaySettings,
    KafkaSettings,
    LlmSettings,
    LocalServiceSettings,
    McpServerSpec,
    OutboxSettings,
    RegistrySettings,
    Section,
    TopicSettings,
    WorkerSettings,
)

__all__ = ["DEV_PLACEHOLDER_SECRETS", "FLAT_NAMES", "McpServerSpec", "Settings", "env_name", "get_settings",
           "settings_markdown"]

#: The coalescing window when an LLM answers and ``BEACON_COALESCE_WINDOW_MS`` is unset: people type a
#: follow-up within a second or two; longer holds every answer back for everyone.
DEFAULT_AGENT_COALESCE_MS = 1500

#: Secrets shipped as defaults for local development; refused when ``BEACON_ENV=production``.
DEV_PLACEHOLDER_SECRETS = frozenset({"dev-token", "dev-secret", "dev-verify-token", "changeme", ""})

_ENV_PREFIX = "BEACON_"
#: Set while :meth:`Settings.replace` validates a copy: the variables are not read again.
_COPYING: ContextVar[bool] = ContextVar("beacon_settings_copying", default=False)


class Settings(BaseSettings):
    """All of Beacon's settings, grouped by what they configure; ``BEACON_<FLAT NAME>`` sets each one."""

    model_config = SettingsConfigDict(
        env_prefix=_ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # --- general (flat: the field's own name) ---------------------------------------------
    env: Literal["development", "production"] = Field(
        "development", description="`production` refuses placeholder secrets and unsigned webhooks."
    )
    data_dir: Path = Field(Path(".beacon"), description="Where local state lives: broker data, SQLite, logs.")
    log_level: str = Field("INFO", description="Log level of every Beacon process.")
    otel_endpoint: str | None = Field(
        None, description="OTLP/HTTP endpoint (e.g. `http://127.0.0.1:4318`) every process exports its OpenTelemetry "
        "spans to (`/v1/traces` is appended); unset, no span is made and the OpenTelemetry SDK is not even imported."
    )

    # --- sections -------------------------------------------------------------------------
    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description=KafkaSettings.__doc__)
    registry: RegistrySettings = Field(default_factory=RegistrySettings, description=RegistrySettings.__doc__)
    topics: TopicSettings = Field(default_factory=TopicSettings, description=TopicSettings.__doc__)
    api: ApiSettings = Field(default_factory=ApiSettings, description=ApiSettings.__doc__)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings, description=DatabaseSettings.__doc__)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings, description=OutboxSettings.__doc__)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings, description=GatewaySettings.__doc__)
    whatsapp: WhatsAppSettings = Field(default_factory=WhatsAppSettings, description=WhatsAppSettings.__doc__)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings, description=TelegramSettings.__doc__)
    webchat: WebChatSettings = Field(default_factory=WebChatSettings, description=WebChatSettings.__doc__)
    nostr: NostrSettings = Field(default_factory=NostrSettings, description=NostrSettings.__doc__)
    bridge: BridgeSettings = Field(default_factory=BridgeSettings, description=BridgeSettings.__doc__)
    workers: WorkerSettings = Field(default_factory=WorkerSettings, description=WorkerSettings.__doc__)
    llm: LlmSettings = Field(default_factory=LlmSettings, description=LlmSettings.__doc__)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings, description=ConsoleSettings.__doc__)
    local: LocalServiceSettings = Field(default_factory=LocalServiceSettings, description=LocalServiceSettings.__doc__)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the flat ``BEACON_*`` variables (environment over ``.env``); only the keyword
        arguments when :meth:`replace` validates a copy."""
        del env_settings  # replaced by FlatVariables (the flat names, environment over .env)
        if _COPYING.get():
            return (init_settings,)
        env_file = dotenv_settings.env_file if isinstance(dotenv_settings, DotEnvSettingsSource) else None
        return init_settings, FlatVariables(settings_cls, env_file), file_secret_settings

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_names(cls, data: Any) -> Any:
        """``kafka_bootstrap=...`` means ``kafka.bootstrap``: flat names are welcome wherever settings are built."""
        return nest(data) if isinstance(data, Mapping) else data

    @model_validator(mode="after")
    def _no_placeholders_in_production(self) -> Settings:
        if self.env != "production":
            return self
        problems = []
        if self.api.token.get_secret_value() in DEV_PLACEHOLDER_SECRETS:
            problems.append("BEACON_API_TOKEN is a development placeholder")
        if self.whatsapp.allow_unsigned:
            problems.append("BEACON_WHATSAPP_ALLOW_UNSIGNED must be false")
        if self.whatsapp.app_secret is not None and (
            self.whatsapp.app_secret.get_secret_value() in DEV_PLACEHOLDER_SECRETS
        ):
            problems.append("BEACON_WHATSAPP_APP_SECRET is a development placeholder")
        if self.telegram.bot_token is not None and (
            self.telegram.webhook_secret is None
            or self.telegram.webhook_secret.get_secret_value() in DEV_PLACEHOLDER_SECRETS
        ):
            problems.append("BEACON_TELEGRAM_WEBHOOK_SECRET must be set to a real secret when a Telegram bot token is")
        if problems:
            raise ValueError("refusing production settings: " + "; ".join(problems))
        return self

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes``: flat names (``kafka_bootstrap="..."``, ``topic_in="..."``) or whole
        sections (``kafka=KafkaSettings(...)``). The environment is not read again."""
        current = {name: getattr(self, name) for name in type(self).model_fields}
        copying = _COPYING.set(True)  # pydantic-settings validates through __init__, which would read them again
        try:
            return type(self).model_validate({**current, **changes})
        finally:
            _COPYING.reset(copying)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """``update`` goes through :meth:`replace`, so flat names keep working and the copy is validated."""
        if update:
            return self.replace(**update)
        return super().model_copy(deep=deep)

    @classmethod
    def flat_fields(cls) -> dict[str, FieldInfo]:
        """Every setting by its flat name (``kafka_bootstrap``: the variable without ``BEACON_``, lower case)."""
        return {flat: _field_info(flat) for flat in FLAT_NAMES}

    def coalesce_window(self) -> float | None:
        """Seconds of the coalescing window (``BEACON_COALESCE_WINDOW_MS``, resolved), or None when it is off."""
        window = self.workers.coalesce_window_ms
        if window is None:
            window = DEFAULT_AGENT_COALESCE_MS if self.llm.base_url else 0
        return window / 1000 if window > 0 else None

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite in the data dir."""
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'beacon.db').resolve()}"

    def gateway_url_for(self, channel: str) -> str:
        """Base URL of ``channel``'s gateway (``BEACON_GATEWAY_URLS``, else 127.0.0.1 on its port setting)."""
        if channel in self.gateway.urls:
            return self.gateway.urls[channel].rstrip("/")
        ports = {"whatsapp": self.whatsapp.gateway_port, "telegram": self.telegram.port, "webchat": self.webchat.port}
        if channel not in ports:
            raise KeyError(channel)
        return f"http://127.0.0.1:{ports[channel]}"

    @property
    def kafka_port(self) -> int:
        """The port of the first bootstrap server (the local broker listens there)."""
        first = self.kafka.bootstrap.split(",")[0]
        return int(first.rsplit(":", 1)[1])

    @property
    def registry_port(self) -> int:
        """The port of the schema registry URL (the local registry listens there)."""
        return urlparse(self.registry.url).port or 80

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


#: Sections by their attribute on ``Settings``.
SECTIONS: dict[str, type[Section]] = {
    name: info.annotation for name, info in Settings.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, Section)
}
_GENERAL = tuple(name for name in Settings.model_fields if name not in SECTIONS)
#: Flat name (``kafka_bootstrap``) -> (section or None for the general settings, field in it).
FLAT_PATHS: dict[str, tuple[str | None, str]] = {
    **{name: (None, name) for name in _GENERAL},
    **{section.flat_name(field): (attr, field) for attr, section in SECTIONS.items() for field in section.model_fields},
}
#: Every setting's flat name, in the order of the README's table.
FLAT_NAMES = tuple(FLAT_PATHS)


def _field_info(flat: str) -> FieldInfo:
    section, field = FLAT_PATHS[flat]
    return Settings.model_fields[field] if section is None else SECTIONS[section].model_fields[field]


def nest(data: Mapping[str, Any]) -> dict[str, Any]:
    """``{"kafka_bootstrap": x, "env": y}`` -> ``{"kafka": {"bootstrap": x}, "env": y}``; a flat name wins over
    the same field given in its section (a dict or a section object), other keys pass as they are."""
    out: dict[str, Any] = {}
    flat: list[tuple[str, str, Any]] = []
    for key, value in data.items():
        section, field = FLAT_PATHS.get(key, (None, key))
        if section is None:
            out[key] = value
        else:
            flat.append((section, field, value))
    for section, field, value in flat:
        current = out.get(section)
        if isinstance(current, Section):
            current = {name: getattr(current, name) for name in type(current).model_fields}
        out[section] = {**(current or {}), field: value}
    return out


class _FlatVariablesModel(BaseSettings):
    """Base of the model that tells pydantic-settings how to read and decode each flat variable."""

    model_config = SettingsConfigDict(env_prefix=_ENV_PREFIX, extra="ignore", case_sensitive=False)


def _flat_variables_model() -> type[BaseSettings]:
    fields: dict[str, Any] = {}
    for flat in FLAT_NAMES:
        info = _field_info(flat)
        optional: Any = info.annotation | None  # type: ignore[operator]  # every section field is annotated
        annotation = Annotated[optional, *info.metadata] if info.metadata else optional
        fields[flat] = (annotation, Field(None, validation_alias=info.validation_alias))
    return create_model("FlatVariablesModel", __base__=_FlatVariablesModel, **fields)


_FLAT_MODEL = _flat_variables_model()


class FlatVariables(PydanticBaseSettingsSource):
    """Reads every setting from its flat variable (and the aliases it had), in the environment and in ``.env``,
    decoded as pydantic-settings decodes them (JSON for lists and objects), and nests them into sections."""

    def __init__(self, settings_cls: type[BaseSettings], env_file: Any) -> None:
        super().__init__(settings_cls)
        self._env = EnvSettingsSource(_FLAT_MODEL)
        self._dotenv = DotEnvSettingsSource(_FLAT_MODEL, env_file=env_file) if env_file else None
        self._by_variable = {variable.lower(): flat for flat in FLAT_NAMES for variable in variables(flat)}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads everything at once

    def _flat(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {self._by_variable.get(key.lower(), self._by_variable.get(f"beacon_{key}".lower(), key)): value
                for key, value in values.items()}

    def __call__(self) -> dict[str, Any]:
        found = self._flat(self._dotenv()) if self._dotenv else {}
        found.update(self._flat(self._env()))
        return nest({key: value for key, value in found.items() if key in FLAT_PATHS})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()


def variables(flat: str) -> list[str]:
    """Every variable a setting is read from: ``BEACON_<FLAT NAME>``, or its alias choices (first the name)."""
    alias = _field_info(flat).validation_alias
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    return [f"{_ENV_PREFIX}{flat.upper()}"]


def variable_of(loc: tuple[int | str, ...]) -> str:
    """The variable a validation error's location names: ``("topics", "partitions")`` is
    ``BEACON_TOPIC_PARTITIONS`` (the section's flat name, not the path in code)."""
    if len(loc) >= 2 and loc[0] in SECTIONS and loc[1] in SECTIONS[str(loc[0])].model_fields:
        rest = "".join(f"[{part}]" for part in loc[2:])
        return env_name(SECTIONS[str(loc[0])].flat_name(str(loc[1]))) + rest
    if loc and loc[0] in Settings.model_fields:
        return env_name(str(loc[0]))
    return _ENV_PREFIX + "_".join(str(part) for part in loc).upper()


def env_name(flat: str) -> str:
    """The environment variable of a setting given by its flat name: ``BEACON_<FLAT NAME>``."""
    return variables(flat)[0]


def code_path(flat: str) -> str:
    """Where code reads a setting: ``settings.kafka.bootstrap`` for ``kafka_bootstrap``."""
    section, field = FLAT_PATHS[flat]
    return f"settings.{field}" if section is None else f"settings.{section}.{field}"


def _shown_default(info: FieldInfo) -> str:
    default = info.get_default(call_default_factory=True)
    if isinstance(default, SecretStr):
        return "(secret, dev placeholder)" if default.get_secret_value() else "(secret)"
    if default is None:
        return "(unset)"
    return f"`{default}`"


def settings_markdown() -> str:
    """Every setting as Markdown, a table per section (variable, where code reads it, default, meaning): the README
    embeds it."""
    parts = []
    groups: list[tuple[str, str, list[str]]] = [("general", "Where Beacon keeps its state, how it logs, which "
                                                 "environment it is.", [f for f in FLAT_NAMES if f in _GENERAL])]
    for attr, section in SECTIONS.items():
        groups.append((attr, section.__doc__ or "", [section.flat_name(f) for f in section.model_fields]))
    for title, doc, flats in groups:
        rows = [f"### `{title}`", "", " ".join(doc.split()), "",
                "| variable | in code | default | meaning |", "|---|---|---|---|"]
        for flat in flats:
            info = _field_info(flat)
            meaning = (info.description or "").replace("|", "\\|")
            rows.append(f"| `{env_name(flat)}` | `{code_path(flat)}` | {_shown_default(info)} | {meaning} |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)
