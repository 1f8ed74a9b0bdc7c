"""The one configuration object of a run: an optional YAML file plus LEADSCORE_ variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from features.config import DatasetConfig, FeatureConfig, SnapshotConfig
from features.contract import DataContractError
from features.vocabulary import CLOSED_AT, CONVERTED
from models.training.config import TrainConfig
from serve.settings import ENV_PREFIX as SERVE_PREFIX
from serve.settings import variables_naming_no_setting

ENV_PREFIX = "LEADSCORE_"
# The notebooks' data folder: a variable with the prefix that is no setting of a run.
_NOTEBOOK_VARIABLES = ("LEADSCORE_DATA",)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """LEADSCORE_ variables whose first part names no setting of a run (the service's own,
    LEADSCORE_SERVE_*, are checked by the service)."""
    service = [name for name in environ if name.upper().startswith(SERVE_PREFIX)]
    return variables_naming_no_setting(
        environ,
        ENV_PREFIX,
        LeadscoreConfig.model_fields,
        nested=True,
        others=[*service, *_NOTEBOOK_VARIABLES],
    )


class LeadscoreConfig(BaseSettings):
    """Everything a command needs; sections mirror the YAML file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    dataset: DatasetConfig = DatasetConfig()
    features: FeatureConfig = FeatureConfig()
    snapshots: SnapshotConfig = SnapshotConfig()
    train: TrainConfig = TrainConfig()
    rules_path: Path | None = None
    # Where the embedded MLflow store (mlflow.db, mlartifacts/) lives.
    workdir: Path = Path(".")

    @model_validator(mode="after")
    def _outcomes_are_never_features(self) -> LeadscoreConfig:
        """The outcome and its close date are written with the sale: a model that reads them
        would score leads with their own future."""
        outcome = {
            CONVERTED, CLOSED_AT, self.dataset.lead_columns.converted,
            self.dataset.lead_columns.closed_at,
        }  # fmt: skip
        features = self.features
        named = [
            *features.categorical_columns, *features.numeric_columns,
            *(c for c in (features.title_column, features.email_column, features.account_column)
              if c is not None),
            *self.dataset.fit_columns, *self.dataset.behaviour_columns,
        ]  # fmt: skip
        clash = [c for c in named if c in outcome]
        if clash:
            raise ValueError(
                f"'{clash[0]}' is the outcome or its close date and can never be a feature"
            )
        return self

    @model_validator(mode="after")
    def _no_misspelt_variables(self) -> LeadscoreConfig:
        """A LEADSCORE_ variable that names no setting is refused: misspelt, it would be
        ignored (a model trained into the wrong store, say). Nested ones are refused by the
        sections themselves."""
        unknown = unknown_variables(os.environ)
        if unknown:
            known = ", ".join(f"{ENV_PREFIX}{name.upper()}" for name in type(self).model_fields)
            raise ValueError(f"unknown settings {', '.join(unknown)} (a typo?); known: {known}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment variables win over the YAML file, which is passed in as init values.
        return env_settings, init_settings


def load_config(path: Path | None) -> LeadscoreConfig:
    """Read the YAML config (if any); errors name the file and the field path."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise DataContractError(f"cannot read the config ({exc})", file=path) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise DataContractError("the config must be a mapping of sections", file=path)
        values = loaded or {}
        # Relative paths in the file are relative to the file.
        dataset = values.get("dataset")
        if isinstance(dataset, dict):
            for key in ("leads_path", "events_path"):
                if dataset.get(key):
                    dataset[key] = str((path.parent / dataset[key]).resolve())
        if values.get("rules_path"):
            values["rules_path"] = str((path.parent / values["rules_path"]).resolve())
    try:
        return LeadscoreConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise DataContractError(
            f"{field}: {message}" if field else message, file=path or "configuration"
        ) from exc
