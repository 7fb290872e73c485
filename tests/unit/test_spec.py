from __future__ import annotations

import pytest

from harness.deploy.plan import build_plan
from harness.errors import SpecError
from harness.spec import Release, Target, fill_placeholders


def rel(name: str, migrations: tuple[str, ...] = (), contract: tuple[str, ...] = ()) -> Release:
    return Release(
        name=name,
        command=("{python}", "app.py", "--port", "{port}"),
        migrate_command=("{python}", "migrate.py", "{target}"),
        migrations=migrations,
        contract_migrations=contract,
    )


def test_release_rejects_shell_string_and_unknown_placeholder() -> None:
    with pytest.raises(SpecError, match="no shell string"):
        Release(name="v1", command="python app.py", migrate_command=())  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"unknown placeholder \{prot\}") as info:
        Release(name="v1", command=("app", "{prot}"), migrate_command=())
    assert "port" in info.value.choices


def test_contract_migrations_must_be_the_tail() -> None:
    with pytest.raises(SpecError, match="must be the last"):
        rel("v2", ("1", "2", "3"), contract=("2",))
    release = rel("v2", ("1", "2", "3"), contract=("3",))
    assert release.expand_migrations == ("1", "2")
    assert release.last_migration == "3"


def test_target_release_lookup_lists_choices() -> None:
    target = Target(name="t", releases=(rel("v1"), rel("v2")), applied_migrations_sql="x")
    assert target.release("v2").name == "v2"
    with pytest.raises(SpecError) as info:
        target.release("v3")
    assert info.value.choices == ("v1", "v2")
    assert "choices: v1, v2" in str(info.value)


def test_duplicate_release_names_rejected() -> None:
    with pytest.raises(SpecError, match="repeat"):
        Target(name="t", releases=(rel("v1"), rel("v1")), applied_migrations_sql="x")


def test_fill_placeholders() -> None:
    assert fill_placeholders(["{python}", "-p", "{port}"], {"python": "py", "port": "80"}) == [
        "py",
        "-p",
        "80",
    ]


def test_plan_steps_expand_rollout_verify_contract() -> None:
    a = rel("v1", ("0001", "0002"))
    b = rel("v2", ("0001", "0002", "0003", "0004", "0005"), contract=("0005",))
    target = Target(name="t", releases=(a, b), applied_migrations_sql="x")
    plan = build_plan(target, a, b, instances=2)
    assert plan.step_names == (
        "migrate:0003",
        "migrate:0004",
        "rollout:0",
        "rollout:1",
        "verify",
        "contract:0005",
    )
    with pytest.raises(SpecError) as info:
        plan.step("migrate:0009")
    assert "migrate:0003" in info.value.choices


def test_plan_refuses_to_move_backwards() -> None:
    a = rel("v1", ("0001", "0002"))
    b = rel("v2", ("0001",))
    target = Target(name="t", releases=(a, b), applied_migrations_sql="x")
    with pytest.raises(SpecError, match="only move forward"):
        build_plan(target, a, b, instances=1)


def _compat_target() -> Target:
    """v1 knows 1-2; v2 adds 3 (a nullable column) and 4 (a backfill), both declared
    compatible with the releases before it, and contracts with 5."""
    v2 = Release(
        name="v2",
        command=("app",),
        migrate_command=("m", "{target}"),
        migrations=("1", "2", "3", "4", "5"),
        contract_migrations=("5",),
        compatible_migrations=("3", "4"),
    )
    v1 = Release(
        name="v1",
        command=("app",),
        migrate_command=("m", "{target}"),
        migrations=("1", "2"),
        accepts=(("1",),),
    )
    return Target(name="t", releases=(v1, v2), applied_migrations_sql="x")


@pytest.mark.parametrize(
    ("release", "applied", "accepted"),
    [
        ("v1", ("1", "2"), True),  # its own
        ("v1", ("1", "2", "3"), True),  # a halted expand: compatible by declaration
        ("v1", ("1", "2", "3", "4"), True),
        ("v1", ("1", "2", "3", "4", "5"), False),  # the contract: never compatible
        ("v1", ("1", "2", "4"), True),  # later compatible migrations, whatever subset
        ("v1", ("1",), True),  # a state it accepts explicitly
        ("v1", (), False),
        ("v2", ("1", "2", "3", "4"), True),  # contract pending
        ("v2", ("1", "2", "3", "4", "5"), True),
        ("v2", ("1", "2"), False),  # v2 code on v1's schema
        ("v2", ("1", "2", "3"), False),  # its own expand not finished
    ],
)
def test_a_release_accepts_its_schema_plus_later_compatible_migrations(
    release: str, applied: tuple[str, ...], accepted: bool
) -> None:
    target = _compat_target()
    assert target.accepts(target.release(release), applied) is accepted


def test_compatible_migrations_are_expand_migrations_of_the_release() -> None:
    with pytest.raises(SpecError, match="never compatible"):
        Release(
            name="v2",
            command=("app",),
            migrate_command=("m", "{target}"),
            migrations=("1", "2"),
            contract_migrations=("2",),
            compatible_migrations=("2",),
        )
    with pytest.raises(SpecError, match="lists of migration ids"):
        Release(name="v2", command=("app",), migrate_command=(), accepts=("1",))  # type: ignore[arg-type]
