"""Decisions of the runner and unseed that need no server: skips, drift, errors, plans."""

from datetime import UTC, datetime
from unittest import mock

import psycopg
import pytest

from tenantdb.core.seeding import context, errors, history, reports, running, unseeding
from tests.unit.core.seeding.test_ordering import ALL, seeder


def entry(
    name: str, version: int = 1, profile: str = "production", checksum: str = "0" * 64
) -> history.Entry:
    return history.Entry(
        name, version, profile, checksum, 3, 0.1, datetime(2026, 1, 1, tzinfo=UTC), "me"
    )


def test_a_seeder_runs_unless_its_version_is_recorded() -> None:
    plans = seeder("plans")
    assert running.skip_reason(plans, None) is None
    assert running.skip_reason(plans, entry("plans", version=2)) is None
    assert running.skip_reason(plans, entry("plans")) == "already applied at version 1"


def test_an_edit_without_a_version_bump_is_a_warning_not_a_rerun() -> None:
    plans = seeder("plans")
    edited = entry("plans", checksum="f" * 64)
    assert running.skip_reason(plans, edited) is not None
    assert "not bumped" in running.drift(plans, edited)
    assert running.drift(plans, entry("plans")) == ""
    assert running.drift(plans, entry("plans", version=2, checksum="f" * 64)) == ""


def test_a_database_failure_names_the_seeder_and_keeps_the_server_message() -> None:
    plans = seeder("plans")
    report = reports.SeedReport("uid", "production")
    report.results.append(running.result(seeder("roles"), reports.Outcome.APPLIED, rows=4))
    exc = psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")
    failure = running.failure(errors.SeedFailed, "seeder", plans, exc, report)
    assert failure.reason == "SeedFailed"
    assert failure.seeder == "plans"
    assert failure.report is report
    assert failure.permanent
    assert "seeder 'plans' (version 1) failed and was rolled back" in str(failure)
    assert "duplicate key value" in str(failure)
    assert "earlier seeders kept (roles)" in str(failure)


def test_a_lost_connection_is_worth_a_retry() -> None:
    exc = psycopg.OperationalError("server closed the connection unexpectedly")
    failure = running.failure(
        errors.SeedFailed, "seeder", seeder("plans"), exc, reports.SeedReport("u", "p")
    )
    assert not failure.permanent


def test_a_bug_in_a_seeder_is_reported_by_its_type() -> None:
    failure = running.failure(
        errors.SeedFailed, "seeder", seeder("plans"), KeyError("plan"), reports.SeedReport("u", "p")
    )
    assert "KeyError: 'plan'" in str(failure)
    assert failure.sqlstate is None


def test_the_report_sums_up() -> None:
    report = reports.SeedReport("uid", "development")
    report.results += [
        running.result(
            seeder("roles"), reports.Outcome.SKIPPED, detail="already", warning="edited"
        ),
        running.result(seeder("plans"), reports.Outcome.APPLIED, rows=4),
        running.result(seeder("users"), reports.Outcome.APPLIED, rows=16),
    ]
    assert report.applied == ["plans", "users"]
    assert report.skipped == ["roles"]
    assert report.rows == 20
    assert report.warnings == ["roles: edited"]
    assert report.summary() == "2 applied (plans, users); 1 already seeded; 20 rows"
    assert reports.SeedReport("uid", "production").summary() == "no seeders selected"


DONE = {
    "roles": entry("roles"),
    "users": entry("users", profile="development"),
    "crm": entry("crm", profile="development"),
    "history": entry("history", profile="development"),
}


def test_unseed_removes_recorded_development_seeders_dependents_first() -> None:
    assert [s.name for s in unseeding.plan(ALL, DONE, ())] == ["history", "crm", "users"]


def test_unseed_of_one_seeder_takes_its_recorded_dependents_along() -> None:
    assert [s.name for s in unseeding.plan(ALL, DONE, ["crm"])] == ["history", "crm"]
    partial = {k: v for k, v in DONE.items() if k != "history"}
    assert [s.name for s in unseeding.plan(ALL, partial, ["users"])] == ["crm", "users"]


def test_unseed_refuses_production_seeders_and_unknown_names() -> None:
    with pytest.raises(errors.InvalidSelection, match="'roles': production seeders"):
        unseeding.plan(ALL, DONE, ["roles"])
    with pytest.raises(errors.UnknownSeeder, match="'nope'"):
        unseeding.plan(ALL, DONE, ["nope"])


def test_unseed_refuses_data_whose_seeder_is_gone() -> None:
    done = {**DONE, "legacy": entry("legacy", profile="development")}
    with pytest.raises(errors.UnknownSeeder, match="'legacy' ran on this tenant but are no longer"):
        unseeding.plan(ALL, done, ())


def make_context(isolation: str, options: dict[str, str] | None = None) -> context.Context:
    tenant = context.Tenant("uid", "acme", "default", isolation)
    return context.Context(mock.Mock(), mock.Mock(), tenant, "development", mock.Mock(), options)


def test_natural_keys_of_shared_tables_start_with_tenant_id() -> None:
    assert make_context("shared").natural_key("email") == ["tenant_id", "email"]
    assert make_context("schema").natural_key("email") == ["email"]
    assert make_context("database").natural_key("a", "b") == ["a", "b"]


def test_options_take_the_type_of_their_default() -> None:
    ctx = make_context("schema", {"users": "200", "label": "x"})
    assert ctx.option("users", 20) == 200
    assert ctx.option("days", 60) == 60
    assert ctx.option("label", "y") == "x"
    with pytest.raises(ValueError, match="option users='many' is not a valid int"):
        make_context("schema", {"users": "many"}).option("users", 1)
