"""What routes depend on, as FastAPI dependencies: the service (settings, model holder, metrics,
prediction log, batcher: one object on `app.state`, made by `create_app`), the served model, and
the API and admin keys.

Few and `async`: FastAPI resolves every dependency on every request, and a plain `def` one costs
a hop to the thread pool."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader
from pydantic import SecretStr

from serve.batching import MicroBatcher
from serve.metrics import Metrics
from serve.predictionlog import PredictionLog
from serve.schemas import ErrorOut
from serve.settings import ServeSettings
from serve.state import LoadedModel, ModelHolder

API_KEY_HEADER = "X-API-Key"


@dataclass
class Service:
    """What the routes share, made once per app."""

    settings: ServeSettings
    holder: ModelHolder
    metrics: Metrics
    batcher: MicroBatcher[Any]
    log: PredictionLog | None = None  # opened when the app starts

    @property
    def prediction_log(self) -> PredictionLog:
        if self.log is None:
            raise HTTPException(status_code=503, detail="the prediction log is not open yet")
        return self.log


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def get_service(request: Request) -> Service:
    return _service(request)


ServiceDep = Annotated[Service, Depends(get_service)]

# The dependencies below read the service off the request rather than depending on
# `get_service`: FastAPI solves every dependency of a dependency on each request, cached or not,
# at tens of microseconds each, which a single-lead /predict notices.


async def serving_model(request: Request) -> LoadedModel:
    """The model being served; 503 until the first one has loaded."""
    model = _service(request).holder.current
    if model is None:
        raise HTTPException(status_code=503, detail="no model loaded yet")
    return model


# Declared as a security scheme in the OpenAPI document; checked below (a key is optional when
# none is configured, so FastAPI's own "missing" error is off).
api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="Needed when the service has an API key (the admin key for /admin routes).",
)


def _check_key(expected: SecretStr | None, given: str | None) -> None:
    if expected is None:
        return
    if given is None or not secrets.compare_digest(
        given.encode(), expected.get_secret_value().encode()
    ):
        raise HTTPException(status_code=401, detail=f"missing or wrong {API_KEY_HEADER}")


async def require_api_key(
    request: Request, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    """The API key, when one is set (constant-time comparison)."""
    _check_key(_service(request).settings.api_key, key)


async def require_metrics_access(
    request: Request, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    """The API key for /metrics too, unless `metrics_public` opens it."""
    settings = _service(request).settings
    if not settings.metrics_public:
        _check_key(settings.api_key, key)


async def require_admin_key(
    request: Request, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    """The admin key (or the API key when no admin key is set)."""
    settings = _service(request).settings
    _check_key(settings.admin_key or settings.api_key, key)


ModelDep = Annotated[LoadedModel, Depends(serving_model)]


def check_json_content_type(content_type: str | None) -> None:
    """Bodies are JSON, and say so: `application/json` or a `+json` type. As FastAPI's own
    strict check, this keeps a browser page from posting to the service without CORS asking
    first (a request without this header needs no preflight); 415 otherwise, on every route
    with a body."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise HTTPException(
            status_code=415,
            detail="the body must be JSON, sent with the header Content-Type: application/json",
        )


async def require_json_body(request: Request) -> None:
    """`check_json_content_type` for routes whose body FastAPI reads (/predict reads its own)."""
    check_json_content_type(request.headers.get("content-type"))


_ANSWERS = {
    400: "The body is not JSON text (e.g. not UTF-8).",
    401: "Missing or wrong X-API-Key (when the service has a key).",
    404: "Not available for the served model.",
    408: "The body did not arrive within the body deadline; the connection is closed.",
    413: "Too many leads in one request, or a body over the size limit.",
    415: "The body was not sent as JSON (Content-Type: application/json).",
    422: "A field is missing or wrong: `detail` lists each problem with its path (`loc`).",
    503: "Not ready (no model loaded yet); busy: more requests in flight than the service takes "
    "at once; or the predictions could be neither stored nor spilled, so they are not answered "
    "(retry after the Retry-After header's seconds).",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, for its OpenAPI document (FastAPI adds 422 by itself to
    routes whose parameters it validates)."""
    return {status: {"model": ErrorOut, "description": _ANSWERS[status]} for status in statuses}
