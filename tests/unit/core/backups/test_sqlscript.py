"""Splitting pg_restore's SQL output: statements, COPY blocks, meta-commands."""

from __future__ import annotations

import io

import pytest

from tenantdb.core import errors
from tenantdb.core.backups import framing, restoring, sqlscript


def split(text: str) -> list[tuple[str, bytes]]:
    """Each statement, with the COPY rows that followed it."""
    source = framing.Buffered(io.BytesIO(text.encode()).read)
    found = []
    for statement in sqlscript.statements(source):
        rows = bytearray()
        if statement.is_copy:
            source.copy_block(rows.extend)
        found.append((statement.text, bytes(rows)))
    return found


def test_quotes_comments_and_dollar_bodies_keep_their_semicolons_and_backslashes() -> None:
    script = (
        "\\restrict abc\n"
        "--\n-- Name: f; Type: FUNCTION\n--\n\n"
        "CREATE FUNCTION f() RETURNS text AS $_$\nSELECT ';\n\\! rm -rf /\n\\.\n'\n$_$;\n"
        "COMMENT ON TABLE t IS 'a;b''\n\\.';\n"
        "SELECT E'it\\'s;' /* a ; /* nested ; */ */ ;\n"
        'CREATE TABLE "we;ird" (a$b int);\n'
        "\\unrestrict abc\n"
    )
    assert [text for text, _ in split(script)] == [
        "CREATE FUNCTION f() RETURNS text AS $_$\nSELECT ';\n\\! rm -rf /\n\\.\n'\n$_$;",
        "COMMENT ON TABLE t IS 'a;b''\n\\.';",
        "SELECT E'it\\'s;' /* a ; /* nested ; */ */ ;",
        'CREATE TABLE "we;ird" (a$b int);',
    ]


def test_copy_rows_pass_untouched_up_to_the_end_line() -> None:
    script = (
        "COPY s.t (a, b) FROM stdin;\n1\t\\\\.\n2\tCOPY x FROM stdin;\n\\.\n"
        "COPY s.empty (a) FROM stdin;\n\\.\n"
        "SELECT pg_catalog.setval('s.seq', 2, true);\n"
    )
    assert split(script) == [
        ("COPY s.t (a, b) FROM stdin;", b"1\t\\\\.\n2\tCOPY x FROM stdin;\n"),
        ("COPY s.empty (a) FROM stdin;", b""),
        ("SELECT pg_catalog.setval('s.seq', 2, true);", b""),
    ]


@pytest.mark.parametrize("line", ["\\! touch /tmp/x\n", "\\connect other\n", "\\copy t from x\n"])
def test_any_other_meta_command_is_refused(line: str) -> None:
    with pytest.raises(errors.BackupError, match="meta-command"):
        split("SELECT 1;\n" + line)


def test_a_truncated_script_is_an_error() -> None:
    with pytest.raises(errors.BackupError, match="inside a statement"):
        split("CREATE FUNCTION f() AS $$ unfinished\n")
    with pytest.raises(errors.BackupError, match="inside a table's rows"):
        split("COPY t FROM stdin;\n1\n")


def test_the_rewrite_replaces_whole_identifiers_only() -> None:
    rewrite = restoring.rewriter({"t_a_1": "t_b_2", "t_a_1_owner": "t_b_2_owner"})
    text = 'GRANT ALL ON t_a_1.x TO t_a_1_owner; "t_a_1"; t_a_10; xt_a_1; t_a_1$'
    assert rewrite(text) == 'GRANT ALL ON t_b_2.x TO t_b_2_owner; "t_b_2"; t_a_10; xt_a_1; t_a_1$'
