"""Demo history: N users x D days of outreach and replies, deterministic from a seed.

Each demo user gets a sending rate (log-normal around 25 emails a working
day), an open rate (Beta(6, 9), about 40 %) and a reply rate among opens
(Beta(2, 18), about 10 %). Every day the user is active (a few days off
at random, a two-week ramp-up after joining, quiet weekends) draws its
number of emails from a Poisson distribution, sends them during business
hours, and some are opened and answered hours later. The same seed, user
count and day count always produce the same rows, down to the
``Message-ID``: options ``users``, ``days`` and ``seed`` (for example
``tenantdb seed --option demo_history.users=200``).

Rows go in with COPY. On a re-run (the demo users already existed) they
go through a staging table and ``ON CONFLICT DO NOTHING`` instead, so a
second run adds nothing.
"""

import math
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from tenantdb.core import seeding

from . import _tables, _writing

NAME = "demo_history"
VERSION = 1
PROFILE = "development"
DEPENDS_ON = ("sample_crm",)

USERS = 20
DAYS = 60
SEED = 2026
END = datetime(2026, 1, 1, tzinfo=UTC)
"""The history ends here (exclusive), so runs on different days write the same rows."""
DOMAIN = "demo.example.com"
COLUMNS = (
    "message_id",
    "user_id",
    "lead_id",
    "campaign_id",
    "direction",
    "subject",
    "sent_at",
    "opened_at",
)
WEEKDAY_FACTOR = (1.0, 1.1, 1.05, 1.0, 0.8, 0.08, 0.04)
"""Monday to Sunday."""
SUBJECTS = (
    "Quick question",
    "Idea for your pipeline",
    "Following up",
    "Worth a chat?",
    "How others book more meetings",
    "Last try",
    "Intro",
    "Re: our call",
)
FIRST = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn")
LAST = ("Reed", "Hayes", "Brooks", "Price", "Ward", "Cole", "Grant", "Lane", "Fox", "Shaw")

Message = tuple[str, int, int | None, int | None, str, str, datetime, datetime | None]


def demo_users(users: int, seed: int) -> list[dict[str, object]]:
    """The demo users' rows (natural key: email)."""
    rng = random.Random(f"{seed}:users")  # noqa: S311 - reproducible demo data
    start = END - timedelta(days=365)
    return [
        {
            "email": f"demo-{n:04d}@{DOMAIN}",
            "full_name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            "time_zone": "UTC",
            "created_at": start,
        }
        for n in range(users)
    ]


def generate(
    user_ids: Sequence[int],
    leads: Sequence[tuple[int, int | None]],
    days: int,
    seed: int,
) -> Iterator[Message]:
    """Every message of the history: user ``n`` of ``user_ids`` is demo user ``n``.

    ``leads`` are ``(lead id, campaign id)`` pairs to write to; each user's
    stream depends only on the seed and the user's number, so adding users
    leaves the others' history unchanged.
    """
    first_day = END - timedelta(days=days)
    for number, user_id in enumerate(user_ids):
        yield from _user_history(number, user_id, leads, first_day, days, seed)


def _user_history(
    number: int,
    user_id: int,
    leads: Sequence[tuple[int, int | None]],
    first_day: datetime,
    days: int,
    seed: int,
) -> Iterator[Message]:
    rng = random.Random(f"{seed}:{number}")  # noqa: S311 - reproducible demo data
    rate = min(120.0, rng.lognormvariate(math.log(25), 0.5))
    open_rate = rng.betavariate(6, 9)
    reply_rate = rng.betavariate(2, 18)
    joined = int(rng.random() * days * 0.3) if rng.random() < 0.4 else 0
    hour = 3600.0
    random_, gauss, expo, choice = rng.random, rng.gauss, rng.expovariate, rng.choice
    prefix = f"<{seed}.{number}."
    suffix = f"@{DOMAIN}>"
    for day in range(joined, days):
        midnight = first_day + timedelta(days=day)
        if random_() < 0.03:
            continue  # a day off
        ramp = min(1.0, (day - joined + 1) / 14)
        count = _poisson(rng, rate * WEEKDAY_FACTOR[midnight.weekday()] * ramp)
        for i in range(count):
            sent = midnight + timedelta(seconds=min(max(gauss(11.0, 2.2), 7.0), 19.5) * hour)
            lead_id, campaign_id = choice(leads) if leads else (None, None)
            subject = SUBJECTS[int(random_() * len(SUBJECTS))]
            opened = None
            if random_() < open_rate:
                opened = sent + timedelta(seconds=expo(1 / (3 * hour)))
            yield (
                f"{prefix}{day}.{i}{suffix}",
                user_id,
                lead_id,
                campaign_id,
                "outbound",
                subject,
                sent,
                opened,
            )
            if opened is not None and random_() < reply_rate:
                replied = opened + timedelta(seconds=expo(1 / (5 * hour)))
                yield (
                    f"{prefix}{day}.{i}.r{suffix}",
                    user_id,
                    lead_id,
                    campaign_id,
                    "inbound",
                    "Re: " + subject,
                    replied,
                    replied,
                )


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw: Knuth's method for small means, a rounded normal for large ones."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count


def seed(ctx: seeding.Context) -> None:
    users = ctx.option("users", USERS)
    days = ctx.option("days", DAYS)
    seed_value = ctx.option("seed", SEED)
    rows = demo_users(users, seed_value)
    created = ctx.connection.execute(
        insert(_tables.users).values(rows).on_conflict_do_nothing().returning(_tables.users.c.id)
    ).fetchall()
    ids = _writing.ids(ctx, _tables.users, "email", (str(r["email"]) for r in rows))
    user_ids = [ids[str(r["email"])] for r in rows]
    lead_rows = ctx.connection.execute(
        sa.select(_tables.leads.c.id, _tables.leads.c.campaign_id).order_by(_tables.leads.c.email)
    ).all()
    leads = [(int(lead_id), campaign) for lead_id, campaign in lead_rows]
    messages = _reporting(ctx, generate(user_ids, leads, days, seed_value), users, days)
    # New demo users cannot have messages yet: plain COPY. Otherwise skip what exists.
    ctx.bulk_insert(
        _tables.inbox_messages, COLUMNS, messages, skip_existing=len(created) != len(rows)
    )


def _reporting(
    ctx: seeding.Context, messages: Iterator[Message], users: int, days: int
) -> Iterator[Message]:
    """Pass messages through, telling the progress bar how many users are done."""
    current, done = None, 0
    for message in messages:
        if message[1] != current:
            if current is not None:
                done += 1
                ctx.progress(done, users)
            current = message[1]
        yield message
    ctx.progress(users, users)


def unseed(ctx: seeding.Context) -> None:
    users, messages = _tables.users, _tables.inbox_messages
    is_demo = users.c.email.like(f"demo-%@{DOMAIN}")
    demo = sa.select(users.c.id).where(is_demo)
    ctx.connection.execute(
        sa.delete(messages).where(
            messages.c.user_id.in_(demo.scalar_subquery()),
            messages.c.message_id.like(f"<%@{DOMAIN}>"),
        )
    )
    ctx.connection.execute(sa.delete(users).where(is_demo))
