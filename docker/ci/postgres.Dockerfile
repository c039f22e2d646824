# A stand-in for the official postgres:15-bookworm image, built from Debian's
# packages, for machines whose Docker engine cannot pull images (CI here).
# It honours the same interface compose.yaml uses: POSTGRES_USER,
# POSTGRES_PASSWORD, POSTGRES_DB, data in /var/lib/postgresql/data, pg_isready.
FROM debian:bookworm-slim
# Unpinned on purpose: bookworm's postgresql-15 gets security updates in place.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY docker/ci/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
# The Debian package creates the user; its uid is whatever it got.
# hadolint ignore=DL3066
USER postgres
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
