"""Routes of the notes API (no trailing slashes)."""

from django.urls import path

from notes import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("version", views.version, name="version"),
    path("notebooks", views.create_notebook, name="create-notebook"),
    path("notebooks/<int:notebook_id>", views.get_notebook, name="notebook"),
    path("notes", views.create_note, name="create-note"),
    path("notes/<int:note_id>", views.get_note, name="note"),
    path("notes/<int:note_id>/publish", views.publish_note, name="publish-note"),
    path("notes/<int:note_id>/archive", views.archive_note, name="archive-note"),
]
