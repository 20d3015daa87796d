"""Allow ``python -m tenantdb``."""

import tenantdb.cli

raise SystemExit(tenantdb.cli.main())
