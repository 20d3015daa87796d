"""Splitting migration SQL into statements, and refusing what escapes the engine."""

import pytest

from tenantdb.core.migrations import statements


def texts(sql: str) -> list[str]:
    return [s.text for s in statements.split(sql)]


def test_splits_on_top_level_semicolons_and_drops_comment_only_parts() -> None:
    sql = "CREATE TABLE a (id int);\n-- just a comment\n;\nCREATE INDEX CONCURRENTLY i ON a (id)"
    assert texts(sql) == ["CREATE TABLE a (id int)", "CREATE INDEX CONCURRENTLY i ON a (id)"]


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO t VALUES ('a;b', 'it''s; fine')",
        "INSERT INTO t VALUES (E'back\\\\slash\\'; still inside')",
        'CREATE TABLE "odd;name" (id int)',
        "SELECT 1 /* a; /* nested; */ comment; */",
        "SELECT 1 -- trailing; comment\n",
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$",
        "CREATE FUNCTION g() RETURNS text LANGUAGE sql AS $body$ SELECT 'x;y'; $body$",
        "CREATE FUNCTION h() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END",
    ],
)
def test_semicolons_inside_literals_comments_and_bodies_do_not_split(statement: str) -> None:
    assert texts(f"{statement};\nSELECT 2;") == [statement.strip(), "SELECT 2"]


def test_dollar_signs_in_identifiers_and_parameters_are_not_quotes() -> None:
    assert texts("SELECT a$b FROM t; SELECT $1; SELECT 3") == [
        "SELECT a$b FROM t",
        "SELECT $1",
        "SELECT 3",
    ]


def test_statements_know_their_line() -> None:
    found = statements.split("SELECT 1;\n\n  -- note\n  SELECT\n 2;")
    assert [(s.text, s.line) for s in found] == [("SELECT 1", 1), ("-- note\n  SELECT\n 2", 3)]
    assert found[1].keywords == ("SELECT",)


@pytest.mark.parametrize(
    "sql",
    [
        "RESET ROLE",
        "set role postgres",
        "SET SESSION AUTHORIZATION postgres",
        "SET LOCAL ROLE postgres",
        "COMMIT",
        "BEGIN",
        "END",
        "ROLLBACK",
        "START TRANSACTION",
        "DISCARD ALL",
        "RESET ALL",
        "/* hidden */ RESET ROLE",
    ],
)
def test_statements_that_escape_the_scope_or_the_transaction_are_refused(sql: str) -> None:
    problems = statements.forbidden(f"CREATE TABLE a (id int);\n{sql};")
    assert len(problems) == 1 and problems[0].startswith("line 2: ")


@pytest.mark.parametrize(
    "sql",
    [
        "ROLLBACK TO SAVEPOINT s",
        "SELECT 'RESET ROLE'",
        "-- RESET ROLE\nSELECT 1",
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$",
        "SET search_path = public",
        "CREATE TABLE role (id int)",
    ],
)
def test_ordinary_statements_pass(sql: str) -> None:
    assert statements.forbidden(sql) == []


@pytest.mark.parametrize(
    ("sql", "name"),
    [
        ("CREATE INDEX CONCURRENTLY leads_status ON leads (status)", "leads_status"),
        ("create unique index concurrently if not exists u ON t (id)", "u"),
        ('CREATE INDEX CONCURRENTLY "Odd ""Name""" ON t (id)', '"Odd ""Name"""'),
        ("/* why */ CREATE INDEX CONCURRENTLY s.i ON s.t (id)", "s.i"),
        ("CREATE INDEX i ON t (id)", None),
        ("CREATE INDEX CONCURRENTLY ON t (id)", None),
        ("SELECT 'CREATE INDEX CONCURRENTLY x ON t'", None),
    ],
)
def test_concurrent_index_names(sql: str, name: str | None) -> None:
    (statement,) = statements.split(sql)
    assert statements.concurrent_index(statement) == name
