"""kopf's connections to the API server: at most so many at once, in one session.

kopf's own session opens a new TLS connection for every request in flight
and has no limit: a burst of 1,000 Tenants had 300-700 connections open at
once (the finalizer patches of every new object, then their status patches
and events), each with asyncio's 256 KiB read buffer and OpenSSL's state, some
250 MB at the peak, where a few dozen connections serve the same requests
as fast (the handlers themselves run on ``execution.max_workers`` threads).
The login handler here logs in with ``kubelogin`` (the service account, else
the kubeconfig: the same credentials as the operator's own calls) and builds
kopf's session with a limit: ``REQUESTS`` connections for requests plus room for every watch
stream, which holds its connection for as long as it lasts. With namespace
globs the number of watches is not known in advance, and nothing is capped.
The same credentials go to the operator's own client (``kube``), so a start reads
them (or runs an exec plugin) once, and so does each re-login kopf asks for.
"""

import asyncio
from collections.abc import Sequence
from typing import Any

import aiohttp
import kopf

from tenantdb.controllers import kube, kubelogin

REQUESTS = 32
"""Connections for requests (patches, events, reads), beside the watch streams."""
WATCHES = 8
"""Watch streams per namespace at most: one per kind with handlers (four), and room
for kopf's own (peering, namespaces, CRDs)."""
MEMO_KEY = "api_connections"
"""The limit, in the operator's memo (0: none)."""
GLOB = frozenset("*?[!")


def connection_limit(namespaces: Sequence[str]) -> int:
    """Connections kopf may open at once for these namespaces (all if none); 0 for no limit."""
    if any(GLOB & set(pattern) for pattern in namespaces):
        return 0
    return REQUESTS + WATCHES * max(len(namespaces), 1)


@kopf.on.login()
async def login(memo: Any, **kwargs: Any) -> kopf.AiohttpSession | None:
    """kopf's own login and session, with its connections limited to the memo's limit."""
    try:
        info = await asyncio.to_thread(kubelogin.credentials)
    except kubelogin.LoginError as exc:
        raise kopf.LoginError(str(exc)) from exc
    kube.login(info)  # the operator's own calls: the same credentials, read once
    connector = aiohttp.TCPConnector(limit=int(memo.get(MEMO_KEY) or 0), ssl=info.as_ssl_context())
    session = aiohttp.ClientSession(
        connector=connector,
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
        priority=info.priority,
        aiohttp_session=session,
    )
