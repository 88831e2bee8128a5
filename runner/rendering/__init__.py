"""A row through a manifest's prompt into one request, and the stream of them; pure."""
