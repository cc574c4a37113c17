#!/bin/sh
# PostgreSQL for docker-compose.ha.yml (docs/operations/compose.md, "Two coordinator replicas on PostgreSQL"), run by
# the image cosigner-pg:local (Debian's postgresql-15 and openssl, .ci/docker.sh) as uid 1000 on a read-only root.
#
# First start (no initialised data directory):
#  1. initdb: UTF8, C locale; the superuser `postgres` reachable only over the container's Unix socket (peer: the
#     container user is `postgres`), so no superuser password exists at all;
#  2. a self-signed TLS certificate for the name `postgres` (the service name the coordinators dial), its private
#     key in the data volume (0600), the certificate copied next to the password in the pg-secrets volume, where
#     the coordinators read it as their `store.tls.caFile` (verify-full: they check the chain and the name);
#  3. pg_hba.conf: the role `cosigner_coordinator`, database `cosigner`, over TLS only, SCRAM-SHA-256; nothing else
#     over the network;
#  4. the role (its password read from the file the setup service generated, $PG_PASSWORD_FILE, through psql's
#     backquote so it is on no command line) and the database it owns (the coordinator migrates the schema itself).
# A marker file written last tells a finished initialisation from one a crash interrupted (which is redone: nothing
# was stored before the marker).
# Every start: the certificate is copied again (so the coordinators always pin the one the server presents) and the
# server runs in the foreground as PID 1's child (compose `init: true`).
set -eu
PGDATA=${PGDATA:-/home/postgres/data}
SECRETS=${PG_SECRETS_DIR:-/run/cosigner-pg}
PG_PASSWORD_FILE=${PG_PASSWORD_FILE:-$SECRETS/password}
SOCKETS=/tmp
DONE="$PGDATA/cosigner-initialised"
umask 077

if [ ! -s "$PG_PASSWORD_FILE" ]; then
  echo "postgres: no password in $PG_PASSWORD_FILE (the setup service writes it): refusing to start" >&2
  exit 1
fi

if [ ! -e "$DONE" ]; then
  rm -rf "$PGDATA"
  echo "postgres: first start: initialising $PGDATA"
  initdb -D "$PGDATA" -U postgres --auth-local=peer --auth-host=reject --encoding=UTF8 --locale=C >/dev/null
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -sha256 \
    -subj /CN=postgres -addext subjectAltName=DNS:postgres \
    -keyout "$PGDATA/server.key" -out "$PGDATA/server.crt" 2>/dev/null
  cat >"$PGDATA/pg_hba.conf" <<'HBA'
# docker-compose.ha.yml: the superuser over the container's socket only; the coordinators over TLS with SCRAM.
local    all       postgres              peer
hostssl  cosigner  cosigner_coordinator  all  scram-sha-256
HBA
  pg_ctl -D "$PGDATA" -w -s -o "-c listen_addresses= -c unix_socket_directories=$SOCKETS" start
  psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKETS" -U postgres -d postgres <<SQL
\\set pw \`cat $PG_PASSWORD_FILE\`
CREATE ROLE cosigner_coordinator LOGIN PASSWORD :'pw';
\\unset pw
CREATE DATABASE cosigner OWNER cosigner_coordinator;
REVOKE ALL ON DATABASE cosigner FROM PUBLIC;
SQL
  pg_ctl -D "$PGDATA" -w -s -m fast stop
  date -u >"$DONE"
  echo "postgres: initialised (role cosigner_coordinator, database cosigner, TLS certificate for 'postgres')"
fi

umask 022
cp "$PGDATA/server.crt" "$SECRETS/server.crt.tmp"
chmod 0644 "$SECRETS/server.crt.tmp"
mv "$SECRETS/server.crt.tmp" "$SECRETS/server.crt"

# jit off: the image leaves out the LLVM JIT. password_encryption: SCRAM, never MD5. TLS 1.2 at least.
exec postgres -D "$PGDATA" \
  -c listen_addresses='*' \
  -c unix_socket_directories="$SOCKETS" \
  -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c ssl_min_protocol_version=TLSv1.2 \
  -c password_encryption=scram-sha-256 \
  -c jit=off \
  -c max_connections="${PG_MAX_CONNECTIONS:-100}" \
  -c log_connections=off -c log_min_messages=warning
