"""The HTTP/SSE app, the client and the CLI."""
