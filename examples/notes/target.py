"""The notes app (Django) plugged into deploy-chaos: the whole of its glue."""

from pathlib import Path

import harness as dc

migrations = dc.DjangoMigrations("notes", Path(__file__).resolve().parent / "manage.py")
SERVE = ("{python}", "manage.py", "runserver", "{host}:{port}", "--noreload")
WHEN = {"created_at": "timestamp"}  # v1 renders +00:00, v2 Z: the same instant
notes = dc.RestWorkload(
    (
        dc.Resource("notebook", "POST /notebooks", "GET /notebooks/{id}",
                    {"name": dc.fake("word")}, table="notes_notebook", types=WHEN),
        dc.Resource("note", "POST /notes", "GET /notes/{id}",
                    {"notebook_id": dc.ref("notebook"), "title": dc.fake("sentence"),
                     "body": dc.fake("text")}, table="notes_note",
                    columns={"notebook_id": "notebook_id"}, types=WHEN, state="status",
                    transitions=(dc.Transition("publish", "POST /notes/{id}/publish", ("draft",)),
                                 dc.Transition("archive", "POST /notes/{id}/archive",
                                               ("draft", "published")))),
    )
)


def target() -> dc.Target:
    return dc.Target(
        name="notes",
        releases=(
            migrations.release("v1", up_to="0001_initial", command=SERVE,
                               env={"NOTES_RELEASE": "v1"}),
            migrations.release("v2", command=SERVE, env={"NOTES_RELEASE": "v2"},
                               compatible_migrations=("0002_note_pinned",)),
        ),
        applied_migrations_sql=migrations.applied_migrations_sql,
        database="notes",
        workload=notes.spec(),
        invariants=notes.invariants(),
    )
