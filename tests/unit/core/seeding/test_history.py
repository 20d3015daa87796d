"""History statements quote the control schema and take every value as a parameter."""

from tenantdb.core import registry
from tenantdb.core.seeding import history


def test_statements_qualify_and_quote_the_control_schema() -> None:
    for builder in (history.select, history.record, history.forget):
        text = builder('weird"schema').as_string(None)
        assert '"weird""schema"."seed_history"' in text
        assert "%s" in text or "%(tenant_uid)s" in text


def test_the_history_table_is_a_control_step_keyed_by_tenant_and_seeder() -> None:
    steps = [step("tenantdb").as_string(None) for step in registry.CONTROL_STEPS]
    (ddl,) = [text for text in steps if "seed_history" in text]
    assert "PRIMARY KEY (tenant_uid, seeder)" in ddl
    assert 'REFERENCES "tenantdb".tenants (uid) ON DELETE CASCADE' in ddl
