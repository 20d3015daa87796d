"""The sample application's tables, as the seeders see them (SQLAlchemy Core).

Only the columns the seeders write or look up are declared; the tables
themselves come from ``migrations/``. Keys are surrogate ``id`` columns
filled by the database; every seeded table also has a natural key
(``key``, ``email``, ``domain``, ``name``, ``address``, ``message_id``)
that upserts and unseed use. In ``shared`` tenants every table also has
``tenant_id`` (filled by its default, checked by row-level security),
which is why conflict targets go through ``ctx.natural_key``.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData()


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger, primary_key=True)


roles = sa.Table(
    "roles",
    metadata,
    _id(),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("permissions", pg.ARRAY(sa.Text), nullable=False),
)

plans = sa.Table(
    "plans",
    metadata,
    _id(),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("monthly_price_cents", sa.Integer, nullable=False),
    sa.Column("seats", sa.Integer, nullable=False),
    sa.Column("email_accounts", sa.Integer, nullable=False),
    sa.Column("daily_send_limit", sa.Integer, nullable=False),
)

settings = sa.Table(
    "settings",
    metadata,
    _id(),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("value", pg.JSONB, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    _id(),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("full_name", sa.Text, nullable=False),
    sa.Column("time_zone", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

team_members = sa.Table(
    "team_members",
    metadata,
    _id(),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("role_id", sa.BigInteger, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
)

companies = sa.Table(
    "companies",
    metadata,
    _id(),
    sa.Column("domain", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("industry", sa.Text, nullable=False),
    sa.Column("employees", sa.Integer, nullable=False),
)

domains = sa.Table(
    "domains",
    metadata,
    _id(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("verified", sa.Boolean, nullable=False),
)

email_accounts = sa.Table(
    "email_accounts",
    metadata,
    _id(),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("domain_id", sa.BigInteger, nullable=False),
    sa.Column("daily_limit", sa.Integer, nullable=False),
)

templates = sa.Table(
    "templates",
    metadata,
    _id(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)

campaigns = sa.Table(
    "campaigns",
    metadata,
    _id(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("owner_id", sa.BigInteger, nullable=False),
    sa.Column("template_id", sa.BigInteger, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
)

leads = sa.Table(
    "leads",
    metadata,
    _id(),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("company_id", sa.BigInteger, nullable=False),
    sa.Column("campaign_id", sa.BigInteger),
    sa.Column("first_name", sa.Text, nullable=False),
    sa.Column("last_name", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
)

inbox_messages = sa.Table(
    "inbox_messages",
    metadata,
    _id(),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("lead_id", sa.BigInteger),
    sa.Column("campaign_id", sa.BigInteger),
    sa.Column("direction", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True)),
)
