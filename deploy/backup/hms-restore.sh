#!/usr/bin/env bash
# Restore an HMS dump (deploy/backup/hms-backup.sh) into a NEW database, never over the
# live one: check it there, then point DATABASE_URL at it (or rename the databases).
#
#   DATABASE_URL=postgresql://hms@127.0.0.1/hms deploy/backup/hms-restore.sh DUMP NEW_DATABASE
#
# DATABASE_URL  a database on the server to restore to (the new database is created on
#               the same server, by the same role: it needs CREATEDB). HMS_RESTORE_URL, if
#               set, is used instead (e.g. the postgres superuser).
# NEW_DATABASE  the name of the database to create: letters, digits and _; refused if it
#               exists.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 DUMP_FILE NEW_DATABASE" >&2
  exit 2
fi
dump=$1
target=$2
if [[ ! -r $dump ]]; then
  echo "cannot read the dump $dump" >&2
  exit 2
fi
if ! [[ $target =~ ^[A-Za-z_][A-Za-z0-9_]{0,62}$ ]]; then
  echo "the new database's name must be letters, digits and _ (not '$target')" >&2
  exit 2
fi
source_url=${HMS_RESTORE_URL:-${DATABASE_URL:?DATABASE_URL is not set}}
url=${source_url/#postgresql+psycopg:/postgresql:}
url=${url/#postgres:/postgresql:}
# The same server and credentials, the new database's name in the URL's path.
target_url=$(printf '%s' "$url" | sed -E "s#^(postgresql://[^/?]*)(/[^?]*)?#\\1/$target#")

exists=$(psql --dbname="$url" -XAtq -c "SELECT 1 FROM pg_database WHERE datname = '$target'")
if [[ $exists == 1 ]]; then
  echo "the database $target exists already: choose a new name (a restore never overwrites)" >&2
  exit 1
fi
psql --dbname="$url" -Xq -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$target\""
pg_restore --no-owner --no-privileges --exit-on-error --dbname="$target_url" "$dump"
echo "restored $dump into $target" >&2
