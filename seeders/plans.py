"""Default billing plans (free, starter, growth, scale) with their limits."""

from tenantdb.core import seeding

from . import _tables, _writing

NAME = "plans"
VERSION = 1
PROFILE = "production"
DEPENDS_ON: tuple[str, ...] = ()

PLANS = [
    # key, name, monthly price in cents, seats, email accounts, daily sends per account
    ("free", "Free", 0, 1, 1, 50),
    ("starter", "Starter", 3_900, 3, 3, 200),
    ("growth", "Growth", 9_900, 10, 15, 500),
    ("scale", "Scale", 29_900, 50, 100, 1_000),
]


def seed(ctx: seeding.Context) -> None:
    rows = [
        {
            "key": key,
            "name": name,
            "monthly_price_cents": price,
            "seats": seats,
            "email_accounts": accounts,
            "daily_send_limit": sends,
        }
        for key, name, price, seats, accounts, sends in PLANS
    ]
    _writing.upsert(ctx, _tables.plans, rows, key=("key",))
