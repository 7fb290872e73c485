"""The declarative workload: the Model it derives (calls, interpretation, what it learns),
the invariants it declares, and the read-back rules it relies on (the last told state wins,
an unknown transition leaves an entity unjudged, typed values compare by meaning)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from faker import Faker

from harness import (
    Answer,
    Completion,
    Draw,
    HttpMethod,
    ReadBack,
    Resource,
    RestWorkload,
    Transition,
    choice,
    decimal,
    fake,
    integer,
    load_rest_workload,
    ref,
    same_value,
)
from harness.errors import SpecError
from harness.invariants import (
    Conservation,
    DurableAcknowledgedWrites,
    ReadableByRunningRelease,
    ReferentialIntegrity,
)
from harness.workload.history import Operation, OpType

SEED = 11


def _shop() -> RestWorkload:
    return RestWorkload(
        (
            Resource(
                "author",
                "POST /authors",
                "GET /authors/{id}",
                {"name": fake("name")},
                table="authors",
            ),
            Resource(
                "book",
                "POST /books",
                "GET /books/{id}",
                {
                    "title": fake("sentence"),
                    "author_id": ref("author"),
                    "price": decimal("1.00", "9.99"),
                },
                table="books",
                types={"created_at": "timestamp"},
            ),
            Resource(
                "order",
                "POST /orders",
                "GET /orders/{id}",
                {"book_id": ref("book"), "quantity": integer(1, 3)},
                table="orders",
                state="status",
                transitions=(Transition("pay", "POST /orders/{id}/pay", ("pending",)),),
            ),
        )
    )


def _draw() -> Draw:
    print(f"seed {SEED}")
    fake_ = Faker()
    fake_.seed_instance(SEED)
    return Draw(random.Random(SEED), fake_, 0, 0)


def test_the_model_waits_for_what_a_call_references_then_learns_ids() -> None:
    model = _shop().model()
    draw = _draw()
    assert set(model.mix()) == {
        "create_author",
        "read_author",
        "create_book",
        "read_book",
        "create_order",
        "read_order",
        "pay_order",
    }
    assert model.call("create_book", draw) is None  # no author yet
    assert model.call("read_author", draw) is None
    author = model.call("create_author", draw)
    assert author is not None
    assert author.method is HttpMethod.POST
    assert author.path == "/authors"
    told = model.interpret(author, Answer(201, {"id": 7, "name": "x", "tags": ["a"]}))
    assert told.type is OpType.OK
    assert told.value == {"id": 7, "name": "x"}
    model.completed(author, told, draw)
    book = model.call("create_book", draw)
    assert book is not None
    assert book.body is not None
    assert book.body["author_id"] == 7
    price = book.body["price"]
    assert isinstance(price, str)
    assert 1 <= float(price) <= 9.99
    assert len(price.split(".")[1]) == 2
    read = model.call("read_author", draw)
    assert read is not None
    assert read.path == "/authors/7"
    assert read.method is HttpMethod.GET


def test_transitions_follow_the_told_state_and_stop_when_it_is_unknown() -> None:
    model = _shop().model()
    draw = _draw()
    for f, answer in (
        ("create_author", {"id": 1}),
        ("create_book", {"id": 2}),
        ("create_order", {"id": 3, "status": "pending"}),
    ):
        call = model.call(f, draw)
        assert call is not None
        model.completed(call, model.interpret(call, Answer(201, answer)), draw)
    pay = model.call("pay_order", draw)
    assert pay is not None
    assert pay.path == "/orders/3/pay"
    assert pay.value == {"id": 3}
    lost = model.interpret(pay, Answer(503, {"error": "db down"}))
    assert lost.type is OpType.INFO  # a write without an answer may have been applied
    model.completed(pay, lost, draw)
    assert model.call("pay_order", draw) is None  # its state is unknown now
    read = model.call("read_order", draw)
    assert read is not None
    model.completed(read, model.interpret(read, Answer(200, {"id": 3, "status": "paid"})), draw)
    assert model.call("pay_order", draw) is None  # paid: not a state pay starts from
    failed_read = model.interpret(read, Answer(503, {}))
    assert failed_read.type is OpType.FAIL  # a read changes nothing
    assert model.interpret(pay, Answer(409, {"error": "paid"})).type is OpType.FAIL


def test_the_invariants_it_derives() -> None:
    invariants = {inv.name: inv for inv in _shop().invariants()}
    assert set(invariants) == {
        "durable_acknowledged_writes",
        "row_counts",
        "referential_integrity",
        "readable_by_running_release",
    }
    durable = invariants["durable_acknowledged_writes"]
    assert isinstance(durable, DurableAcknowledgedWrites)
    assert [(w.op, w.table) for w in durable.writes] == [
        ("create_author", "authors"),
        ("create_book", "books"),
        ("create_order", "orders"),
    ]
    counts = invariants["row_counts"]
    assert isinstance(counts, Conservation)
    assert {(f.op, f.group, f.amount_field) for f in counts.flows} == {
        ("create_author", "authors", None),
        ("create_book", "books", None),
        ("create_order", "orders", None),
    }
    relations = invariants["referential_integrity"]
    assert isinstance(relations, ReferentialIntegrity)
    assert {(r.child, r.column, r.parent) for r in relations.relations} == {
        ("books", "author_id", "authors"),
        ("orders", "book_id", "books"),
    }
    reads = invariants["readable_by_running_release"]
    assert isinstance(reads, ReadableByRunningRelease)
    book = next(r for r in reads.reads if r.op == "create_book")
    assert book.types == {"price": "decimal", "created_at": "timestamp"}
    assert book.fields == ("id", "title", "author_id", "price", "created_at")
    order = next(r for r in reads.reads if r.op == "create_order")
    assert order.updates == ("pay_order",)
    assert "status" in order.fields


def test_bad_declarations_say_what_was_expected() -> None:
    with pytest.raises(SpecError, match="references 'writer'") as info:
        RestWorkload((Resource("book", "POST /books", fields={"a": ref("writer")}),))
    assert info.value.choices == ("book",)
    with pytest.raises(SpecError, match=re.escape("'<POST|PUT> /path'")):
        Resource("book", "GET /books")
    with pytest.raises(SpecError, match="no state field"):
        Resource("o", "POST /o", transitions=(Transition("pay", "POST /o/{id}/pay", ("new",)),))
    with pytest.raises(SpecError, match="Faker provider"):
        fake("no_such_provider")
    with pytest.raises(SpecError, match="type of 'at'"):
        Resource("o", "POST /o", types={"at": "date"})
    with pytest.raises(SpecError, match="non-empty list"):
        choice([])


@pytest.mark.parametrize(
    ("kind", "told", "read", "same"),
    [
        ("timestamp", "2026-12-01T10:00:00.5+00:00", "2026-12-01T10:00:00.500Z", True),
        ("timestamp", "2026-12-01T11:00:00+01:00", "2026-12-01T10:00:00Z", True),
        ("timestamp", "2026-12-01T10:00:00Z", "2026-12-01T10:00:01Z", False),
        ("timestamp", "2026-12-01T10:00:00", "2026-12-01T10:00:00Z", True),
        ("timestamp", "yesterday", "2026-12-01T10:00:00Z", False),
        ("decimal", "12.50", 12.5, True),
        ("decimal", "12.50", "12.51", False),
        ("decimal", "12.50", None, False),
        ("text", 7, "7", True),
        (None, "12.50", 12.5, False),
        (None, "12.50", "12.50", True),
    ],
)
def test_typed_values_compare_by_meaning(
    kind: str | None, told: object, read: object, same: bool
) -> None:
    assert same_value(kind, told, read) is same  # type: ignore[arg-type]


def _op(
    index: int, f: str, type_: OpType, value: dict[str, object], start: float, end: float
) -> Operation:
    return Operation(index, 0, f, type_, value, start, end)  # type: ignore[arg-type]


def test_read_backs_take_the_last_told_state_and_leave_unknown_ones_unjudged() -> None:
    spec = ReadBack(
        "create_order", "/orders/{id}", ("id", "status"), updates=("pay_order", "ship_order")
    )
    ops = [
        _op(0, "create_order", OpType.OK, {"id": 1, "status": "pending"}, 0.0, 0.1),
        _op(1, "create_order", OpType.OK, {"id": 2, "status": "pending"}, 0.0, 0.1),
        _op(2, "create_order", OpType.OK, {"id": 3, "status": "pending"}, 0.0, 0.1),
        _op(3, "create_order", OpType.INFO, {"quantity": 1}, 0.0, 0.1),
        _op(4, "pay_order", OpType.OK, {"id": 1, "status": "paid"}, 1.0, 1.1),
        _op(5, "ship_order", OpType.OK, {"id": 1, "status": "shipped"}, 2.0, 2.1),
        _op(6, "pay_order", OpType.INFO, {"id": 2}, 1.0, 1.1),
        _op(7, "pay_order", OpType.FAIL, {"id": 3}, 1.0, 1.1),
        _op(8, "create_order", OpType.OK, {"id": 4, "status": "pending"}, 0.0, 0.1),
        _op(9, "pay_order", OpType.OK, {"id": 4, "status": "paid"}, 1.0, 1.5),
        _op(10, "ship_order", OpType.OK, {"id": 4, "status": "shipped"}, 1.2, 1.3),
    ]
    told, unjudged = spec.entities(ops)
    assert told == {
        "/orders/1": {"id": 1, "status": "shipped"},
        "/orders/3": {"id": 3, "status": "pending"},
    }
    assert sorted((u["path"], u["reason"]) for u in unjudged) == [
        ("/orders/2", "an update of unknown outcome"),
        ("/orders/4", "acknowledged updates overlapped"),
    ]


def test_a_normaliser_hook_runs_before_the_comparison() -> None:
    spec = ReadBack(
        "create_note",
        "/notes/{id}",
        ("title",),
        normalise=lambda name, value: value.strip().lower() if isinstance(value, str) else value,
    )
    assert spec.same("title", "Hello ", "hello")
    assert not spec.same("title", "Hello", "world")
    assert Completion  # the public names a Model needs stay importable


SHOP_YAML = """\
clients: 3
rate: 20
resources:
  author:
    create: POST /authors
    read: GET /authors/{id}
    table: authors
    fields:
      name: {fake: name}
  book:
    create: POST /books
    read: GET /books/{id}
    table: books
    fields:
      title: {fake: sentence}
      author_id: {ref: author}
      price: {decimal: ["1.00", "9.99"]}
    types: {created_at: timestamp}
  order:
    create: POST /orders
    read: GET /orders/{id}
    table: orders
    fields:
      book_id: {ref: book}
      quantity: {integer: [1, 3]}
    state: status
    transitions:
      pay: {call: "POST /orders/{id}/pay", from: [pending]}
"""


def test_the_yaml_form_declares_the_same_workload(tmp_path: Path) -> None:
    path = tmp_path / "workload.yaml"
    path.write_text(SHOP_YAML, encoding="utf-8")
    loaded = load_rest_workload(path)
    expected = _shop()
    assert loaded.resources == expected.resources
    assert (loaded.clients, loaded.rate) == (3, 20.0)


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (("      name: {fake: name}", "      name: {fake: nonsense}"), 9, "Faker provider"),
        (("      author_id: {ref: author}", "      author_id: {ref: writer}"), 16, "writer"),
        (("    table: orders", "    tabel: orders"), 22, "unknown key 'tabel'"),
        (("      quantity: {integer: [1, 3]}", "      quantity: {integer: [1]}"), 25, "[low"),
        (("from: [pending]", "from: [pending], wait: 1"), 28, "unknown key 'wait'"),
        (('"POST /orders/{id}/pay"', "POST /orders/{id}/pay"), 28, "quote a value with braces"),
    ],
)
def test_yaml_errors_name_the_line(
    tmp_path: Path, change: tuple[str, str], line: int, message: str
) -> None:
    path = tmp_path / "workload.yaml"
    assert change[0] in SHOP_YAML
    path.write_text(SHOP_YAML.replace(change[0], change[1]), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_rest_workload(path)
    print(info.value)
    assert message in str(info.value)
    assert info.value.source == str(path)
    assert info.value.line == line


def test_what_a_rest_workload_does_not_model_is_refused_clearly() -> None:
    with pytest.raises(SpecError, match="deletes are not modelled"):
        Transition("remove", "DELETE /notes/{id}")
    with pytest.raises(SpecError, match="a list of states"):
        Transition("pay", "POST /orders/{id}/pay", "pending")  # type: ignore[arg-type]


def test_a_put_create_fills_its_path_and_two_resources_may_share_a_table() -> None:
    work = RestWorkload(
        (
            Resource(
                "user",
                "PUT /users/{login}",
                fields={"login": fake("user_name")},
                id="login",
                table="users",
                id_column="login",
            ),
            Resource("admin", "POST /admins", table="users"),
        )
    )
    call = work.model().call("create_user", _draw())
    assert call is not None
    assert call.path == f"/users/{call.body['login']}"  # type: ignore[index]
    counts = next(i for i in work.invariants() if i.name == "row_counts")
    assert isinstance(counts, Conservation)
    assert sorted(f.op for f in counts.flows) == ["create_admin", "create_user"]


def test_a_transition_answer_with_its_own_id_does_not_re_key_the_entity() -> None:
    model = _shop().model()
    draw = _draw()
    for f, answer in (
        ("create_author", {"id": 1}),
        ("create_book", {"id": 2}),
        ("create_order", {"id": 5, "status": "pending"}),
    ):
        call = model.call(f, draw)
        assert call is not None
        model.completed(call, model.interpret(call, Answer(201, answer)), draw)
    pay = model.call("pay_order", draw)
    assert pay is not None
    told = model.interpret(pay, Answer(200, {"id": 77, "order_id": 5, "status": "paid"}))
    assert "id" not in told.value  # the payment's id is not the order's
    model.completed(pay, told, draw)
    read = model.call("read_order", draw)
    assert read is not None
    assert read.path == "/orders/5"


def test_read_backs_judge_only_what_the_client_was_told() -> None:
    spec = ReadBack("create_order", "/orders/{id}", ("id", "status", "total"), updates=("pay",))
    ops = [
        _op(0, "create_order", OpType.OK, {"id": 1, "status": "pending", "total": 9}, 0.0, 0.1),
        # an acknowledged update that told nothing of the state: the state is not known now
        _op(1, "pay", OpType.OK, {"id": 1}, 1.0, 1.1),
    ]
    told, unjudged = spec.entities(ops)
    assert told == {"/orders/1": {"id": 1}}
    assert unjudged == []
    # an update that names no entity by the read path may have changed any of them
    other = ReadBack("create_order", "/orders/{number}", ("status",), updates=("pay",))
    ops = [
        _op(0, "create_order", OpType.OK, {"number": "A1", "status": "pending"}, 0.0, 0.1),
        _op(1, "pay", OpType.INFO, {"id": 1}, 1.0, 1.1),
    ]
    told, unjudged = other.entities(ops)
    assert told == {}
    assert [u["reason"] for u in unjudged] == ["1 update(s) name no entity by /orders/{number}"]


def test_a_boolean_equals_only_a_boolean() -> None:
    assert not same_value(None, True, 1)
    assert not same_value("decimal", False, 0)
    assert same_value("text", True, True)
    assert not same_value("text", True, "True")


def test_a_transition_path_must_name_what_the_client_knows() -> None:
    with pytest.raises(SpecError, match=r"names \['item_id'\]") as info:
        Resource(
            "item",
            "POST /items",
            "GET /items/{id}",
            {"sku": fake("word")},
            state="status",
            transitions=(Transition("ship", "POST /items/{item_id}/ship"),),
        )
    assert "sku" in info.value.choices


def test_a_state_field_no_answer_carries_is_said_not_silently_never_sent() -> None:
    work = RestWorkload(
        (
            Resource(
                "item",
                "POST /items",
                "GET /items/{id}",
                state="statuss",
                transitions=(Transition("ship", "POST /items/{id}/ship", ("in_stock",)),),
            ),
        )
    )
    model = work.model()
    draw = _draw()
    assert model.call("ship_item", draw) is None  # nothing created yet: just not yet
    for n in range(5):
        call = model.call("create_item", draw)
        assert call is not None
        told = {"id": n, "status": "in_stock"}
        model.completed(call, model.interpret(call, Answer(201, told)), draw)
    with pytest.raises(SpecError, match="no answer has its state field 'statuss'") as info:
        model.call("ship_item", draw)
    assert "status" in info.value.choices
