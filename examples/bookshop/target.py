"""The bookshop (SQLAlchemy + Alembic) plugged into deploy-chaos: the whole of its glue."""

from pathlib import Path

import harness as dc

migrations = dc.AlembicMigrations(Path(__file__).resolve().parent / "alembic.ini")
SERVE = ("{python}", "-m", "bookshop.app", "--host", "{host}", "--port", "{port}", "--release")
WHEN = {"created_at": "timestamp"}  # v1 renders +00:00, v2 Z: the same instant
shop = dc.RestWorkload(
    (
        dc.Resource("author", "POST /authors", "GET /authors/{id}", {"name": dc.fake("name")},
                    table="authors", types=WHEN),
        dc.Resource("book", "POST /books", "GET /books/{id}",
                    {"title": dc.fake("sentence"), "author_id": dc.ref("author"),
                     "price": dc.decimal("1.00", "80.00")}, table="books", types=WHEN),
        dc.Resource("order", "POST /orders", "GET /orders/{id}",
                    {"book_id": dc.ref("book"), "quantity": dc.integer(1, 3)}, table="orders",
                    types=WHEN, state="status",
                    transitions=(dc.Transition("pay", "POST /orders/{id}/pay", ("pending",)),
                                 dc.Transition("cancel", "POST /orders/{id}/cancel",
                                               ("pending",)))),
    )
)


def target() -> dc.Target:
    return dc.Target(
        name="bookshop",
        releases=(
            migrations.release("v1", up_to="0001", command=(*SERVE, "v1")),
            migrations.release("v2", command=(*SERVE, "v2"), compatible_migrations=("0002",)),
        ),
        applied_migrations_sql=migrations.applied_migrations_sql,
        database="bookshop",
        workload=shop.spec(),
        invariants=shop.invariants(),
    )
