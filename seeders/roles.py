"""Default team roles (owner, admin, member, viewer) and what each may do."""

from tenantdb.core import seeding

from . import _tables, _writing

NAME = "roles"
VERSION = 1
PROFILE = "production"
DEPENDS_ON: tuple[str, ...] = ()

ROLES = [
    (
        "owner",
        "Owner",
        [
            "billing.manage",
            "team.manage",
            "settings.manage",
            "campaigns.manage",
            "leads.manage",
            "inbox.read",
            "inbox.reply",
        ],
    ),
    (
        "admin",
        "Administrator",
        [
            "team.manage",
            "settings.manage",
            "campaigns.manage",
            "leads.manage",
            "inbox.read",
            "inbox.reply",
        ],
    ),
    ("member", "Member", ["campaigns.manage", "leads.manage", "inbox.read", "inbox.reply"]),
    ("viewer", "Viewer", ["campaigns.read", "leads.read", "inbox.read"]),
]


def seed(ctx: seeding.Context) -> None:
    rows = [{"key": key, "name": name, "permissions": perms} for key, name, perms in ROLES]
    _writing.upsert(ctx, _tables.roles, rows, key=("key",))
