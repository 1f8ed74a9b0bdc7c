"""Settings of the API service: environment variables LEADSCORE_SERVE_*, passed in explicitly."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "LEADSCORE_SERVE_"


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, populate_by_name=True
    )

    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1)
    # The registered model and the store are the ones training writes to: LEADSCORE_WORKDIR and
    # LEADSCORE_TRAIN__MODEL_NAME (what `leadscore train` reads) serve too, unless the
    # LEADSCORE_SERVE_ variables say otherwise. One setting, not two that can disagree.
    model_name: str = Field(
        "leadscore",
        validation_alias=AliasChoices(
            "model_name", "LEADSCORE_SERVE_MODEL_NAME", "LEADSCORE_TRAIN__MODEL_NAME"
        ),
    )
    alias: str = "champion"
    # The embedded MLflow store lives here unless MLFLOW_TRACKING_URI says otherwise.
    workdir: Path = Field(
        Path("."),
        validation_alias=AliasChoices("workdir", "LEADSCORE_SERVE_WORKDIR", "LEADSCORE_WORKDIR"),
    )
    # How often to look for a new champion; 0 checks only on POST /admin/reload.
    reload_interval_seconds: float = Field(30.0, ge=0)
    api_key: SecretStr | None = None
    admin_key: SecretStr | None = None
    max_batch: int = Field(1_000, ge=1)
    max_events_per_lead: int = Field(5_000, ge=0)
    max_body_bytes: int = Field(10 * 2**20, ge=1_024)
    # Requests being handled at once, per worker; more are answered 503 with Retry-After at once
    # (/health, /ready and /metrics always answer).
    max_in_flight: int = Field(64, ge=1)
    # A request's headers must be complete this long after its first byte, its body this long
    # after its headers; a late one is answered 408 and its connection closed.
    header_timeout_seconds: float = Field(10.0, gt=0)
    body_timeout_seconds: float = Field(30.0, gt=0)
    prediction_log_url: str = "sqlite:///predictions.db"
    # Where predictions go while the store fails (one file per process, replayed into the store
    # when it is back, by this process or the next one started here).
    prediction_spill_dir: Path = Path("prediction-spill")
    # One log line per request from uvicorn. Off by default: /metrics counts and times every
    # request by route and status, and the prediction log keeps every answer; the line costs
    # about a fifth of a small request's time.
    access_log: bool = False
    # GET /metrics asks for the API key like every other route, unless this opens it (for a
    # Prometheus that cannot send headers, on a network only it reaches).
    metrics_public: bool = False

    @field_validator("api_key", "admin_key")
    @classmethod
    def _not_blank(cls, key: SecretStr | None) -> SecretStr | None:
        # An empty key would let an empty X-API-Key header in.
        if key is not None and not key.get_secret_value().strip():
            raise ValueError("empty or blank: set a key, or unset the variable to have none")
        return key

    @model_validator(mode="after")
    def _safe_in_production(self) -> ServeSettings:
        if self.environment == "production" and (self.api_key is None or self.admin_key is None):
            raise ValueError("production needs LEADSCORE_SERVE_API_KEY and _ADMIN_KEY")
        unknown = unknown_variables(os.environ)
        if unknown:
            known = ", ".join(setting_variables())
            raise ValueError(f"unknown settings {', '.join(unknown)} (a typo?); known: {known}")
        return self


def setting_variables() -> list[str]:
    """The environment variable of every setting."""
    return sorted(f"{ENV_PREFIX}{name.upper()}" for name in ServeSettings.model_fields)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """LEADSCORE_SERVE_ variables that name no setting: a misspelt one would be ignored."""
    return variables_naming_no_setting(environ, ENV_PREFIX, ServeSettings.model_fields)


def variables_naming_no_setting(
    environ: Mapping[str, str],
    prefix: str,
    settings: Iterable[str],
    *,
    nested: bool = False,
    others: Iterable[str] = (),
) -> list[str]:
    """The variables with `prefix` whose name (with `nested`, its first part, before "__")
    is none of `settings`, other than `others` (read elsewhere); the one check of both
    settings objects (the service's, a run's)."""
    known = {name.lower() for name in settings}
    skipped = {name.upper() for name in others}
    unknown = []
    for name in environ:
        upper = name.upper()
        if not upper.startswith(prefix) or upper in skipped:
            continue
        rest = upper.removeprefix(prefix)
        if (rest.partition("__")[0] if nested else rest).lower() not in known:
            unknown.append(name)
    return sorted(unknown)
