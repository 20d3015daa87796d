"""Sample users and their team memberships, one per role, at example.com."""

from datetime import UTC, datetime

from tenantdb.core import seeding

from . import _tables, _writing

NAME = "sample_users"
VERSION = 1
PROFILE = "development"
DEPENDS_ON = ("roles",)

USERS = [
    # email, full name, time zone, role, title
    ("ada@example.com", "Ada Lovelace", "Europe/London", "owner", "Founder"),
    ("grace@example.com", "Grace Hopper", "America/New_York", "admin", "Head of Sales"),
    ("alan@example.com", "Alan Turing", "Europe/London", "member", "Account Executive"),
    ("katherine@example.com", "Katherine Johnson", "America/Chicago", "member", "SDR"),
    ("edsger@example.com", "Edsger Dijkstra", "Europe/Amsterdam", "member", "SDR"),
    ("barbara@example.com", "Barbara Liskov", "America/Los_Angeles", "member", "Account Executive"),
    ("donald@example.com", "Donald Knuth", "America/Los_Angeles", "viewer", "Advisor"),
    ("margaret@example.com", "Margaret Hamilton", "America/New_York", "viewer", "Finance"),
]
JOINED = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
"""A fixed date, so every run writes the same rows."""


def seed(ctx: seeding.Context) -> None:
    users = [
        {"email": email, "full_name": name, "time_zone": tz, "created_at": JOINED}
        for email, name, tz, _, _ in USERS
    ]
    _writing.upsert(ctx, _tables.users, users, key=("email",))
    user_ids = _writing.ids(ctx, _tables.users, "email", (u[0] for u in USERS))
    role_ids = _writing.ids(ctx, _tables.roles, "key", {u[3] for u in USERS})
    members = [
        {"user_id": user_ids[email], "role_id": role_ids[role], "title": title}
        for email, _, _, role, title in USERS
    ]
    _writing.upsert(ctx, _tables.team_members, members, key=("user_id",))


def unseed(ctx: seeding.Context) -> None:
    user_ids = _writing.ids(ctx, _tables.users, "email", (u[0] for u in USERS))
    ctx.connection.execute(
        _tables.team_members.delete().where(
            _tables.team_members.c.user_id.in_(list(user_ids.values()))
        )
    )
    _writing.delete(ctx, _tables.users, "email", user_ids)
