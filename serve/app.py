"""FastAPI application factory. No work at import: the app is built by `create_app()`."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel


class Health(BaseModel):
    status: str


def create_app() -> FastAPI:
    app = FastAPI(title="leadscore", summary="Lead scores with honest probabilities and reasons.")

    @app.get("/health", response_model=Health, tags=["ops"])
    def health() -> Health:
        """The process is up."""
        return Health(status="ok")

    return app
