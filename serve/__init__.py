"""The HTTP API: FastAPI app that serves lead scores."""
