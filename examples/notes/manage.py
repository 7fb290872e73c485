#!/usr/bin/env python
"""Django's command-line utility for the notes example.

Run from this directory, with ``DATABASE_URL`` (and optionally ``NOTES_RELEASE``) set::

    python manage.py migrate notes 0002
    python manage.py runserver 127.0.0.1:8000 --noreload
"""

import os
import sys


def main() -> None:
    """Load the settings (failing in one clear line on a bad environment), then run a command."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notes_site.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        # Importing the settings now turns a bad environment (no DATABASE_URL, an unknown
        # NOTES_RELEASE) into one line and exit status 1, not a traceback from inside Django.
        _ = settings.INSTALLED_APPS
    except ImproperlyConfigured as exc:
        sys.exit(f"notes: ImproperlyConfigured: {exc}")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
