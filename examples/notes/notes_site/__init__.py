"""The Django project of the notes example: settings, root URLconf, WSGI entry point."""
