"""The JSON API of the notes app.

Every answer is JSON; every error answer is `{"error": message}`. A database error during
a request (the server down, restarting, a statement timing out, a schema the release does
not fit) answers 503 at once: the `api` decorator catches `django.db.Error`, and with
`CONN_MAX_AGE = 0` the next request connects afresh.
"""

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import Error as DatabaseError
from django.db import IntegrityError, connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from notes.models import Note, Notebook

View = Callable[..., HttpResponse]

MAX_TEXT = 200  # the length of the name and title columns
MAX_ID = 2**63 - 1  # bigint


class BadRequest(Exception):
    """The request body is malformed: the answer is 400 with this message."""


def error(status: int, message: str) -> JsonResponse:
    """An error answer: `{"error": message}` with `status`."""
    return JsonResponse({"error": message}, status=status)


def database_unavailable(exc: DatabaseError) -> str:
    """The message of the 503 answer to a database error: the error, in one line."""
    detail = str(exc).strip().splitlines()
    reason = f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
    return f"database unavailable: {reason}"


def api(*methods: str) -> Callable[[View], View]:
    """Make a view a JSON endpoint answering `methods` only.

    A wrong method answers 405, a `BadRequest` 400, a database error 503 (never a hang:
    connecting gives up after 3 s, a statement after 5 s).
    """
    allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in allowed:
                response = error(405, f"method {request.method} not allowed on {request.path}")
                response["Allow"] = ", ".join(sorted(allowed))
                return response
            try:
                return view(request, *args, **kwargs)
            except BadRequest as exc:
                return error(400, str(exc))
            except DatabaseError as exc:
                return error(503, database_unavailable(exc))

        return csrf_exempt(wrapper)

    return decorate


# --- request bodies ---------------------------------------------------------------------


def json_object(request: HttpRequest) -> dict[str, Any]:
    """The request body, which must be a JSON object."""
    try:
        data = json.loads(request.body)
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, absurd nesting
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def text_field(
    data: dict[str, Any], key: str, *, max_length: int | None = None, blank: bool = False
) -> str:
    """A required string field; PostgreSQL-storable, non-blank unless `blank`."""
    value = data.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"{key!r} must be a string")
    if not blank and not value.strip():
        raise BadRequest(f"{key!r} must not be blank")
    if max_length is not None and len(value) > max_length:
        raise BadRequest(f"{key!r} must be at most {max_length} characters")
    if "\x00" in value:
        raise BadRequest(f"{key!r} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800"
        raise BadRequest(f"{key!r} is not valid Unicode text") from exc
    return value


def id_field(data: dict[str, Any], key: str) -> int:
    """A required positive integer id."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise BadRequest(f"{key!r} must be a positive integer")
    return value


def optional_bool(data: dict[str, Any], key: str) -> bool:
    """An optional boolean field: absent or null is False."""
    value = data.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest(f"{key!r} must be true or false")
    return value


# --- rendering --------------------------------------------------------------------------


def timestamp(value: datetime) -> str:
    """ISO 8601 in UTC; v1 ends it with `+00:00`, v2 with `Z` (the same instant)."""
    text = value.astimezone(UTC).isoformat(timespec="microseconds")
    if settings.NOTES_RELEASE == "v2":
        return text.removesuffix("+00:00") + "Z"
    return text


def notebook_json(notebook: Notebook) -> dict[str, Any]:
    """The JSON of a notebook."""
    return {
        "id": notebook.pk,
        "name": notebook.name,
        "created_at": timestamp(notebook.created_at),
    }


def note_json(note: Note) -> dict[str, Any]:
    """The JSON of a note; v2 adds `pinned`."""
    body: dict[str, Any] = {
        "id": note.pk,
        "notebook_id": note.notebook_id,
        "title": note.title,
        "body": note.body,
        "status": note.status,
        "created_at": timestamp(note.created_at),
    }
    if settings.NOTES_RELEASE == "v2":
        body["pinned"] = bool(note.pinned)
    return body


# --- endpoints --------------------------------------------------------------------------


@api("GET")
def healthz(request: HttpRequest) -> JsonResponse:
    """200 `{"ok": true}` when `SELECT 1` succeeds, else 503."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return JsonResponse({"ok": False, "error": database_unavailable(exc)}, status=503)
    return JsonResponse({"ok": True})


@api("GET")
def version(request: HttpRequest) -> JsonResponse:
    """The release this process runs."""
    return JsonResponse({"release": settings.NOTES_RELEASE})


@api("POST")
def create_notebook(request: HttpRequest) -> JsonResponse:
    """`{"name"}` → 201 notebook."""
    data = json_object(request)
    notebook = Notebook.objects.create(name=text_field(data, "name", max_length=MAX_TEXT))
    return JsonResponse(notebook_json(notebook), status=201)


@api("GET")
def get_notebook(request: HttpRequest, notebook_id: int) -> JsonResponse:
    """200 notebook, 404."""
    notebook = Notebook.objects.filter(pk=notebook_id).first()
    if notebook is None:
        return error(404, f"notebook {notebook_id} not found")
    return JsonResponse(notebook_json(notebook))


@api("POST")
def create_note(request: HttpRequest) -> JsonResponse:
    """`{"notebook_id", "title", "body", "pinned"?}` → 201 note; 404 unknown notebook.

    `pinned` is v2's (optional, default false); v1 ignores it.
    """
    data = json_object(request)
    notebook_id = id_field(data, "notebook_id")
    fields: dict[str, Any] = {
        "notebook_id": notebook_id,
        "title": text_field(data, "title", max_length=MAX_TEXT),
        "body": text_field(data, "body", blank=True),
    }
    if settings.NOTES_RELEASE == "v2":
        fields["pinned"] = optional_bool(data, "pinned")
    if not Notebook.objects.filter(pk=notebook_id).exists():
        return error(404, f"notebook {notebook_id} not found")
    try:
        with transaction.atomic():  # the foreign key is checked at commit (deferred)
            note = Note.objects.create(**fields)
    except IntegrityError:
        # Only the foreign key can fail: the notebook went away since the check above.
        return error(404, f"notebook {notebook_id} not found")
    return JsonResponse(note_json(note), status=201)


@api("GET")
def get_note(request: HttpRequest, note_id: int) -> JsonResponse:
    """200 note, 404."""
    note = Note.objects.filter(pk=note_id).first()
    if note is None:
        return error(404, f"note {note_id} not found")
    return JsonResponse(note_json(note))


def transition(note_id: int, to: str, allowed_from: set[str]) -> JsonResponse:
    """Move a note to status `to` if its status is in `allowed_from` (else 409).

    The row is locked for the check and the update, so two concurrent requests cannot
    both succeed.
    """
    with transaction.atomic():
        note = Note.objects.select_for_update().filter(pk=note_id).first()
        if note is None:
            return error(404, f"note {note_id} not found")
        if note.status not in allowed_from:
            return error(409, f"note {note_id} is {note.status}, it cannot become {to}")
        note.status = to
        note.save(update_fields=["status"])
    return JsonResponse(note_json(note))


@api("POST")
def publish_note(request: HttpRequest, note_id: int) -> JsonResponse:
    """Draft → published; 409 from any other status."""
    return transition(note_id, Note.Status.PUBLISHED, {Note.Status.DRAFT})


@api("POST")
def archive_note(request: HttpRequest, note_id: int) -> JsonResponse:
    """Draft or published → archived; 409 if already archived."""
    return transition(note_id, Note.Status.ARCHIVED, {Note.Status.DRAFT, Note.Status.PUBLISHED})


# --- error handlers (see notes_site.urls) -----------------------------------------------


def bad_request(request: HttpRequest, exception: Exception) -> JsonResponse:
    """400 for what Django rejects itself (a Host not allowed, a body too large)."""
    return error(400, f"bad request: {exception}" if str(exception) else "bad request")


def forbidden(request: HttpRequest, exception: Exception) -> JsonResponse:
    """403 as JSON."""
    return error(403, "forbidden")


def not_found(request: HttpRequest, exception: Exception) -> JsonResponse:
    """404 for an unknown route."""
    return error(404, f"no route {request.path}")


def server_error(request: HttpRequest) -> JsonResponse:
    """500 as JSON (the traceback goes to the log)."""
    return error(500, "internal server error")
