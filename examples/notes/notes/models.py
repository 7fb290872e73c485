"""Notebooks and notes.

The model follows the release: `Note.pinned` exists only in v2 (migration 0002 adds the
column, nullable, so v1 keeps inserting notes on a schema with 0002 applied). Because the
model changes with `NOTES_RELEASE`, run `makemigrations --check` under v2 only.
"""

from django.conf import settings
from django.db import models


class Notebook(models.Model):
    """A named collection of notes."""

    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Note(models.Model):
    """A note in a notebook; it goes draft → published → archived (or draft → archived)."""

    class Status(models.TextChoices):
        """Where a note is in its life."""

        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published"
        ARCHIVED = "archived", "Archived"

    notebook = models.ForeignKey(Notebook, on_delete=models.PROTECT, related_name="notes")
    title = models.CharField(max_length=200)
    body = models.TextField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    created_at = models.DateTimeField(auto_now_add=True)

    if settings.NOTES_RELEASE == "v2":
        # NULL (a note written by v1) means not pinned.
        pinned = models.BooleanField(null=True)

    def __str__(self) -> str:
        return self.title
