"""The HTTP server: the Starlette app, its routes and streams, and the services it runs."""
