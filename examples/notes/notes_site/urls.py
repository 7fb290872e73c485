"""Root URLconf: the notes API at the top level, JSON error pages for everything else."""

from django.urls import include, path

urlpatterns = [path("", include("notes.urls"))]

# Error answers are JSON like every other answer, never Django's HTML pages.
handler400 = "notes.views.bad_request"
handler403 = "notes.views.forbidden"
handler404 = "notes.views.not_found"
handler500 = "notes.views.server_error"
