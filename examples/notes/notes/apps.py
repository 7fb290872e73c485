"""App configuration of the notes app."""

from django.apps import AppConfig


class NotesConfig(AppConfig):
    """Notebooks and notes; 64-bit primary keys."""

    name = "notes"
    default_auto_field = "django.db.models.BigAutoField"
