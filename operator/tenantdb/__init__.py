"""tenantdb: a Kubernetes operator for multi-tenant PostgreSQL.

The package is layered (see DESIGN.md): ``cli`` > ``controllers`` > ``core`` >
``api`` > ``settings``, with ``devenv`` standing apart. Import modules, not
names, inside the package.
"""

__version__ = "0.1.0"
