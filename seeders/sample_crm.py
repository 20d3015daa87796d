"""Sample companies, sending domains, mailboxes, templates, campaigns and leads."""

import random

from tenantdb.core import seeding

from . import _tables, _writing
from .sample_users import USERS

NAME = "sample_crm"
VERSION = 1
PROFILE = "development"
DEPENDS_ON = ("sample_users",)

SEED = 7
"""Leads are drawn from the lists below with this seed: same leads on every run."""
COMPANIES = [
    # domain, name, industry, employees
    ("northwind.example", "Northwind Traders", "Wholesale", 240),
    ("contoso.example", "Contoso", "Software", 1_800),
    ("fabrikam.example", "Fabrikam", "Manufacturing", 5_200),
    ("tailspin.example", "Tailspin Toys", "Retail", 85),
    ("wingtip.example", "Wingtip Toys", "Retail", 40),
    ("adventureworks.example", "Adventure Works", "Outdoor", 610),
    ("litware.example", "Litware", "Software", 120),
    ("proseware.example", "Proseware", "Publishing", 75),
    ("woodgrove.example", "Woodgrove Bank", "Finance", 9_800),
    ("fourthcoffee.example", "Fourth Coffee", "Hospitality", 330),
    ("lucerne.example", "Lucerne Publishing", "Publishing", 210),
    ("relecloud.example", "Relecloud", "Cloud", 2_400),
]
SENDING_DOMAINS = [("mail.example.com", True), ("outreach.example.com", False)]
TEMPLATES = [
    # name, subject, body
    ("intro", "Quick question about {company}", "Hi {first_name}, ..."),
    ("follow_up", "Following up", "Hi {first_name}, just bumping this up."),
    ("case_study", "How teams like {company} book more meetings", "Hi {first_name}, ..."),
    ("breakup", "Should I close your file?", "Hi {first_name}, ..."),
]
CAMPAIGNS = [
    # name, owner email, template, status
    ("Q1 outbound - software", "alan@example.com", "intro", "active"),
    ("Retail reactivation", "katherine@example.com", "case_study", "paused"),
    ("Enterprise finance", "barbara@example.com", "intro", "draft"),
]
FIRST_NAMES = [
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Amelia",
    "Oliver",
    "Sophia",
    "Elijah",
    "Mia",
    "Lucas",
    "Aiko",
    "Mateo",
    "Zara",
    "Ravi",
    "Ingrid",
    "Kwame",
    "Lucia",
    "Yusuf",
]
LAST_NAMES = [
    "Smith",
    "Garcia",
    "Chen",
    "Okafor",
    "Novak",
    "Silva",
    "Kim",
    "Müller",
    "Rossi",
    "Haddad",
    "Patel",
    "Johansson",
    "Nakamura",
    "Dubois",
    "Kowalski",
    "Mensah",
]
TITLES = [
    "CEO",
    "VP Sales",
    "Head of Growth",
    "Sales Manager",
    "CTO",
    "Marketing Lead",
    "Operations Director",
    "Founder",
]
LEAD_STATUSES = ["new", "new", "new", "contacted", "contacted", "replied", "qualified", "lost"]
LEADS_PER_COMPANY = 5


def leads() -> list[dict[str, object]]:
    """The sample leads, by company domain and campaign name (ids resolved later)."""
    rng = random.Random(SEED)  # noqa: S311 - reproducible sample data
    rows: list[dict[str, object]] = []
    for index, (domain, _, _, _) in enumerate(COMPANIES):
        for n in range(LEADS_PER_COMPANY):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            rows.append(
                {
                    "email": f"{first.lower()}.{n}@{domain}",
                    "domain": domain,
                    "campaign": CAMPAIGNS[index % len(CAMPAIGNS)][0],
                    "first_name": first,
                    "last_name": last,
                    "title": rng.choice(TITLES),
                    "status": rng.choice(LEAD_STATUSES),
                }
            )
    return rows


def seed(ctx: seeding.Context) -> None:
    _writing.upsert(
        ctx,
        _tables.companies,
        [{"domain": d, "name": n, "industry": i, "employees": e} for d, n, i, e in COMPANIES],
        key=("domain",),
    )
    _writing.upsert(
        ctx, _tables.domains, [{"name": n, "verified": v} for n, v in SENDING_DOMAINS], ("name",)
    )
    users = _writing.ids(ctx, _tables.users, "email", (u[0] for u in USERS))
    domain_ids = _writing.ids(ctx, _tables.domains, "name", (d for d, _ in SENDING_DOMAINS))
    sending = domain_ids[SENDING_DOMAINS[0][0]]
    accounts = [
        {
            "address": _address(email),
            "user_id": users[email],
            "domain_id": sending,
            "daily_limit": 200,
        }
        for email, *_ in USERS
    ]
    _writing.upsert(ctx, _tables.email_accounts, accounts, ("address",))
    _writing.upsert(
        ctx,
        _tables.templates,
        [{"name": n, "subject": s, "body": b} for n, s, b in TEMPLATES],
        ("name",),
    )
    template_ids = _writing.ids(ctx, _tables.templates, "name", (t[0] for t in TEMPLATES))
    _writing.upsert(
        ctx,
        _tables.campaigns,
        [
            {"name": n, "owner_id": users[o], "template_id": template_ids[t], "status": s}
            for n, o, t, s in CAMPAIGNS
        ],
        ("name",),
    )
    company_ids = _writing.ids(ctx, _tables.companies, "domain", (c[0] for c in COMPANIES))
    campaign_ids = _writing.ids(ctx, _tables.campaigns, "name", (c[0] for c in CAMPAIGNS))
    rows = [
        {
            "email": lead["email"],
            "company_id": company_ids[str(lead["domain"])],
            "campaign_id": campaign_ids[str(lead["campaign"])],
            "first_name": lead["first_name"],
            "last_name": lead["last_name"],
            "title": lead["title"],
            "status": lead["status"],
        }
        for lead in leads()
    ]
    _writing.upsert(ctx, _tables.leads, rows, ("email",))


def unseed(ctx: seeding.Context) -> None:
    _writing.delete(ctx, _tables.leads, "email", (str(lead["email"]) for lead in leads()))
    _writing.delete(ctx, _tables.campaigns, "name", (c[0] for c in CAMPAIGNS))
    _writing.delete(ctx, _tables.templates, "name", (t[0] for t in TEMPLATES))
    accounts = (_address(u[0]) for u in USERS)
    _writing.delete(ctx, _tables.email_accounts, "address", accounts)
    _writing.delete(ctx, _tables.domains, "name", (d for d, _ in SENDING_DOMAINS))
    _writing.delete(ctx, _tables.companies, "domain", (c[0] for c in COMPANIES))


def _address(email: str) -> str:
    """The mailbox a sample user sends from, on the first sending domain."""
    return email.replace("@example.com", "@" + SENDING_DOMAINS[0][0])
