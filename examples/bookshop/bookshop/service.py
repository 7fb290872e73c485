"""The bookshop's operations, one short transaction each, with database errors translated.

Each transaction runs under a :func:`~bookshop.watchdog.deadline`. Every operation returns a
row mapping (rendered by :mod:`bookshop.render`) or raises an
:class:`~bookshop.errors.ApiError`: NotFound, Conflict, Unprocessable; Unavailable (503) when
the database cannot be reached, dropped the connection or timed out; ServerError (500) when it
rejected the statement (e.g. v2 on a schema without 0002).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg.errors
from sqlalchemy import Column, Connection, Engine, RowMapping, Table, insert, select, text, update
from sqlalchemy import exc as sa_exc

from bookshop import watchdog
from bookshop.db import TRANSACTION_DEADLINE, authors, books, orders
from bookshop.errors import ApiError, Conflict, NotFound, ServerError, Unavailable, Unprocessable
from bookshop.release import Release
from bookshop.validation import NewAuthor, NewBook, NewOrder

__all__ = ["CANCELLED", "PAID", "PENDING", "Bookshop"]

PENDING = "pending"
PAID = "paid"
CANCELLED = "cancelled"


def _reason(exc: BaseException) -> str:
    """The first line of the driver's message (SQLAlchemy's own adds the SQL and a link)."""
    orig = getattr(exc, "orig", None)
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return str(primary)
    lines = str(orig if orig is not None else exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def translate(exc: Exception) -> ApiError:
    """The API error for a SQLAlchemy error."""
    if watchdog.expired():
        return Unavailable(f"database unavailable: no answer within {TRANSACTION_DEADLINE:g} s")
    if isinstance(exc, sa_exc.TimeoutError):
        return Unavailable(f"database unavailable: no connection free ({_reason(exc)})")
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    ):
        return Unavailable(f"database unavailable: {_reason(exc)}")
    return ServerError(f"database error: {_reason(exc)}")


@contextmanager
def _translated(missing_reference: str | None) -> Iterator[None]:
    """Raise SQLAlchemy errors as API errors; a foreign key violation: ``missing_reference``."""
    try:
        yield
    except sa_exc.IntegrityError as exc:
        if missing_reference is not None and isinstance(
            exc.orig, psycopg.errors.ForeignKeyViolation
        ):
            raise Unprocessable(missing_reference) from exc
        raise translate(exc) from exc
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as exc:
        raise translate(exc) from exc


class Bookshop:
    """The operations of one release over one engine."""

    def __init__(self, engine: Engine, release: Release) -> None:
        self.engine = engine
        self.release = release
        self._book_columns: list[Column[object]] = [
            books.c.id,
            books.c.title,
            books.c.author_id,
            books.c.price,
            books.c.created_at,
        ]
        if release.knows_isbn:
            self._book_columns.append(books.c.isbn)

    @contextmanager
    def _transaction(self, missing_reference: str | None = None) -> Iterator[Connection]:
        """A transaction under a deadline, committed at the end of the block; errors translated."""
        with (
            watchdog.deadline(TRANSACTION_DEADLINE),
            _translated(missing_reference),
            self.engine.begin() as conn,
        ):
            yield conn

    def _get(
        self, table: Table, columns: list[Column[object]], row_id: int, what: str
    ) -> RowMapping:
        with self._transaction() as conn:
            row = conn.execute(select(*columns).where(table.c.id == row_id)).mappings().first()
        if row is None:
            raise NotFound(f"{what} {row_id} not found")
        return row

    def check_health(self) -> None:
        """Unavailable unless ``SELECT 1`` succeeds."""
        with self._transaction() as conn:
            conn.execute(text("SELECT 1"))

    def create_author(self, new: NewAuthor) -> RowMapping:
        """Insert an author."""
        with self._transaction() as conn:
            return (
                conn.execute(insert(authors).values(name=new.name).returning(*authors.c))
                .mappings()
                .one()
            )

    def get_author(self, author_id: int) -> RowMapping:
        """An author, or NotFound."""
        return self._get(authors, list(authors.c), author_id, "author")

    def create_book(self, new: NewBook) -> RowMapping:
        """Insert a book; Unprocessable when its author does not exist."""
        values: dict[str, object] = {
            "title": new.title,
            "author_id": new.author_id,
            "price": new.price,
        }
        if self.release.knows_isbn:
            values["isbn"] = new.isbn
        with self._transaction(f"author {new.author_id} does not exist") as conn:
            return (
                conn.execute(insert(books).values(values).returning(*self._book_columns))
                .mappings()
                .one()
            )

    def get_book(self, book_id: int) -> RowMapping:
        """A book, or NotFound."""
        return self._get(books, self._book_columns, book_id, "book")

    def create_order(self, new: NewOrder) -> RowMapping:
        """Insert a pending order; Unprocessable when its book does not exist."""
        with self._transaction(f"book {new.book_id} does not exist") as conn:
            return (
                conn.execute(
                    insert(orders)
                    .values(book_id=new.book_id, quantity=new.quantity, status=PENDING)
                    .returning(*orders.c)
                )
                .mappings()
                .one()
            )

    def get_order(self, order_id: int) -> RowMapping:
        """An order, or NotFound."""
        return self._get(orders, list(orders.c), order_id, "order")

    def pay_order(self, order_id: int) -> RowMapping:
        """Mark a pending order paid; Conflict when it is not pending."""
        return self._settle(order_id, PAID, "paid")

    def cancel_order(self, order_id: int) -> RowMapping:
        """Cancel a pending order; Conflict when it is paid or cancelled already."""
        return self._settle(order_id, CANCELLED, "cancelled")

    def _settle(self, order_id: int, status: str, verb: str) -> RowMapping:
        # One conditional UPDATE: two concurrent requests cannot both move the same order.
        with self._transaction() as conn:
            row = (
                conn.execute(
                    update(orders)
                    .where(orders.c.id == order_id, orders.c.status == PENDING)
                    .values(status=status)
                    .returning(*orders.c)
                )
                .mappings()
                .first()
            )
            if row is not None:
                return row
            current = conn.execute(
                select(orders.c.status).where(orders.c.id == order_id)
            ).scalar_one_or_none()
        if current is None:
            raise NotFound(f"order {order_id} not found")
        raise Conflict(f"order {order_id} is {current}: only a pending order can be {verb}")
