"""Limits on one HTTP connection, enforced inside uvicorn's protocol."""
