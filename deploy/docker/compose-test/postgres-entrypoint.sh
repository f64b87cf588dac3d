#!/bin/sh
# PostgreSQL of the compose test (deploy/docker/compose.test.yml): Debian's
# postgresql-15 in the locally built Debian image, started the way the
# postgres image's entrypoint starts it for docker-compose.yml — on a fresh
# data directory: initdb with POSTGRES_PASSWORD for the postgres role,
# password logins from the network, then every
# /docker-entrypoint-initdb.d/*.sql in order; then the command ("postgres
# -c …") as the postgres user, listening on every interface.
set -eu
export PATH="/usr/lib/postgresql/15/bin:$PATH"
PGDATA=/var/lib/postgresql/data
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

install -d -o postgres -g postgres -m 2775 /var/run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  install -d -o postgres -g postgres -m 700 "$PGDATA"
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  chown postgres "$pwfile"
  as_postgres initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256
  rm -f "$pwfile"
  echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
  as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
  for f in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$f" ] || continue
    echo "running $f"
    as_postgres psql -v ON_ERROR_STOP=1 -U postgres -d postgres -f "$f"
  done
  as_postgres pg_ctl -D "$PGDATA" -m fast -w stop
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$@" -D "$PGDATA" -c listen_addresses='*'
