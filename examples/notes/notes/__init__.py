"""The notes app: notebooks and notes behind a small JSON API."""
