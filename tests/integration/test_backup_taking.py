"""Taking archives end to end (dump, archive, storage) when things go wrong: two backups
of one tenant at once, and a backup process killed half-way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, errors
from tenantdb.core.backups import archive, storage, taking
from tests.integration import backup_support as support

pytestmark = pytest.mark.postgres


def _filled(server: commands.Server, name: str, rows: int) -> support.registry.TenantRecord:
    record, _ = support.provision(server, name, Isolation.SCHEMA)
    with server.sessions.session(record.owner_role, record.database_name) as owner:
        owner.execute(
            f'CREATE TABLE "{record.schema_name}".blob AS'
            f" SELECT g AS id, repeat(md5(g::text), 20) AS body FROM generate_series(1, {rows}) g"
        )
    return record


def test_two_backups_of_one_tenant_never_overlap(server: commands.Server, tmp_path: Path) -> None:
    record = _filled(server, "twice", 20000)
    store = storage.VolumeStorage(tmp_path)
    spans: dict[str, list[float]] = {}

    def take(label: str) -> None:
        def seen(_: int) -> None:
            spans.setdefault(label, []).append(time.monotonic())

        location = f"{record.namespace}/{record.name}/{label}"
        taking.take(server, record.uid, store, location, taking.Options("none", progress=seen))

    threads = [threading.Thread(target=take, args=(label,)) for label in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = sorted(spans.values(), key=min)
    assert max(first) <= min(second)  # the second dumped nothing before the first was done
    for label in ("a", "b"):
        reader = archive.ArchiveReader(store, f"{record.namespace}/{record.name}/{label}")
        assert reader.verify().rows == 20000


KILLED_CHILD = """
import os, sys
from pathlib import Path
from tenantdb.core import commands
from tenantdb.core.backups import storage, taking
from tests.servers import database_settings

server = commands.open_server(database_settings(os.environ["DATABASE_URL"]), "killed", 2)
def seen(done):
    if done > 1 << 20:
        print("dumping", flush=True)
taking.take(server, sys.argv[1], storage.VolumeStorage(Path(sys.argv[2])), sys.argv[3],
            taking.Options("none", progress=seen))
"""


def test_a_backup_killed_half_way_leaves_no_archive_and_can_be_taken_again(
    server: commands.Server, operator_url: str, tmp_path: Path
) -> None:
    record = _filled(server, "killed", 100000)
    location = f"{record.namespace}/{record.name}/20260101T000000Z-again"
    env = {**os.environ, "DATABASE_URL": operator_url}
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_CHILD), record.uid, str(tmp_path), location],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "dumping"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    store = storage.VolumeStorage(tmp_path)
    assert not store.exists(storage.object_key(location, archive.MANIFEST))
    with pytest.raises(errors.ArchiveNotFound):
        archive.ArchiveReader(store, location).verify()
    # an interrupted backup is taken again at the same location, as the controller does
    made = taking.take(server, record.uid, store, location, taking.Options("zstd"))
    assert archive.ArchiveReader(store, location).verify().sha256 == made.sha256
    assert made.rows == 100000
