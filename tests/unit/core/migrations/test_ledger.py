"""The ledger's and markers' SQL builders, as text: identifiers quoted, values as parameters."""

from psycopg import sql

from tenantdb.core import naming, scoping
from tenantdb.core.migrations import ledger, markers, running

SCHEMA = naming.identifier("tenantdb_control")


def text(composed: sql.Composable) -> str:
    return composed.as_string(None)


def test_builders_qualify_and_quote_the_control_schema() -> None:
    for builder in (
        ledger.select_row,
        ledger.select_rows,
        ledger.upsert,
        ledger.upsert_failure,
        ledger.begin_stepwise,
        ledger.record_step,
        ledger.reset_failures,
        ledger.accept_checksum,
        ledger.select_row_and_missing,
    ):
        rendered = text(builder(SCHEMA))
        assert '"tenantdb_control"."migration_ledger"' in rendered, builder.__name__
        assert "%s" in rendered or "%(" in rendered, builder.__name__


def test_a_failure_never_overwrites_an_applied_row() -> None:
    assert "WHERE l.state <> 'applied'" in text(ledger.upsert_failure(SCHEMA))
    assert "WHERE l.state <> 'applied'" not in text(ledger.upsert(SCHEMA))


def test_a_stepwise_retry_keeps_its_progress_only_for_the_same_text() -> None:
    rendered = text(ledger.begin_stepwise(SCHEMA))
    assert "CASE WHEN l.checksum = EXCLUDED.checksum THEN l.statements_done ELSE 0 END" in rendered


def test_applied_versions_look_both_ways() -> None:
    assert "version < %s" in text(ledger.select_applied_versions(SCHEMA, above=False))
    assert "version > %s" in text(ledger.select_applied_versions(SCHEMA, above=True))


def test_markers_live_beside_the_data_closed_to_the_login_role() -> None:
    target = scoping.TenantLocation(
        "u", "acme", "ns", "schema", "t_acme_0123456789", "db", "t_owner", "t_login"
    )
    rendered = text(markers.create_markers(target, "shared", markers.readers(target, [])))
    assert '"t_acme_0123456789"."tenantdb_migrations"' in rendered
    assert 'FROM PUBLIC, "t_login"' in rendered


def test_drift_is_an_applied_or_partly_applied_row_with_another_checksum() -> None:
    applied = ledger.Row("u", ledger.State.APPLIED, "old")
    partly = ledger.Row("u", ledger.State.FAILED, "old", statements_done=1)
    failed_early = ledger.Row("u", ledger.State.FAILED, "old")
    rolled_back = ledger.Row("u", ledger.State.ROLLED_BACK, "old", statements_done=2)
    assert applied.drifted("new") and partly.drifted("new")
    assert not applied.drifted("old")
    assert not failed_early.drifted("new") and not rolled_back.drifted("new")


def test_only_the_applied_rows_transaction_skips_its_flush_wait() -> None:
    """``SET LOCAL``: the pooled operator connection keeps synchronous commit for
    everything after the ledger row's transaction."""
    assert text(running.LEDGER_AFTER_MARKER) == "SET LOCAL synchronous_commit = off"
