"""kopf handlers, one module per kind.

Thin on purpose: read the object, call ``tenantdb.core.commands``, write
status, post events. This is the only package that translates tenantdb
errors into ``kopf.TemporaryError``/``kopf.PermanentError`` and conditions.
"""
