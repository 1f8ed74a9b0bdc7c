"""What routes depend on, as FastAPI dependencies: the settings, the served model, the prediction
log, the metrics, and the API and admin keys. All live on `app.state`, set by `create_app`.

They are `async`: each only reads state, and a plain `def` dependency would cost a hop to the
thread pool on every request."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request
from pydantic import SecretStr

from serve.batching import MicroBatcher
from serve.metrics import Metrics
from serve.predictionlog import PredictionLog
from serve.settings import ServeSettings
from serve.state import LoadedModel, ModelHolder


async def get_settings(request: Request) -> ServeSettings:
    settings: ServeSettings = request.app.state.settings
    return settings


async def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.holder
    return holder


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_prediction_log(request: Request) -> PredictionLog:
    log: PredictionLog = request.app.state.prediction_log
    return log


async def get_batcher(request: Request) -> MicroBatcher[Any]:
    batcher: MicroBatcher[Any] = request.app.state.batcher
    return batcher


async def serving_model(holder: Annotated[ModelHolder, Depends(get_holder)]) -> LoadedModel:
    """The model being served; 503 until the first one has loaded."""
    model = holder.current
    if model is None:
        raise HTTPException(status_code=503, detail="no model loaded yet")
    return model


def _check_key(expected: SecretStr | None, given: str | None) -> None:
    if expected is None:
        return
    if given is None or not secrets.compare_digest(
        given.encode(), expected.get_secret_value().encode()
    ):
        raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")


async def require_api_key(
    settings: Annotated[ServeSettings, Depends(get_settings)],
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """The API key, when one is set (constant-time comparison)."""
    _check_key(settings.api_key, x_api_key)


async def require_admin_key(
    settings: Annotated[ServeSettings, Depends(get_settings)],
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """The admin key (or the API key when no admin key is set)."""
    _check_key(settings.admin_key or settings.api_key, x_api_key)


SettingsDep = Annotated[ServeSettings, Depends(get_settings)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
PredictionLogDep = Annotated[PredictionLog, Depends(get_prediction_log)]
ModelDep = Annotated[LoadedModel, Depends(serving_model)]
BatcherDep = Annotated[MicroBatcher[Any], Depends(get_batcher)]
