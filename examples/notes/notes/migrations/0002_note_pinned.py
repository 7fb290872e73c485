"""Add `Note.pinned` (release v2), nullable so that v1 keeps inserting notes without it.

Written by hand: the model declares `pinned` only under `NOTES_RELEASE=v2`. Adding a
nullable column without a default is a catalog-only change in PostgreSQL (no table rewrite);
migrating back to 0001 drops the column and its values.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    """Add the nullable `pinned` column to notes."""

    dependencies = [("notes", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="note",
            name="pinned",
            field=models.BooleanField(null=True),
        ),
    ]
