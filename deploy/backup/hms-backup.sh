#!/usr/bin/env bash
# Back up HMS's PostgreSQL database: one pg_dump in custom format (compressed, restorable
# table by table with pg_restore), checked readable, then the dumps older than
# HMS_BACKUP_KEEP_DAYS days removed. Prints the new dump's path.
#
#   DATABASE_URL=postgresql://hms@127.0.0.1/hms deploy/backup/hms-backup.sh
#
# DATABASE_URL      the database (HMS's own setting; postgres://, postgresql:// or
#                   postgresql+psycopg://; a password in ~/.pgpass or PGPASSWORD)
# HMS_BACKUP_DIR    where the dumps go (default /var/backups/hms)
# HMS_BACKUP_KEEP_DAYS  how many days of dumps to keep (default 14)
#
# Restore with deploy/backup/hms-restore.sh (into a new database). Copy the dumps off the
# VM too (rsync, object storage): a backup on the same disk dies with it.
set -euo pipefail

: "${DATABASE_URL:?DATABASE_URL is not set}"
dir=${HMS_BACKUP_DIR:-/var/backups/hms}
keep=${HMS_BACKUP_KEEP_DAYS:-14}
if ! [[ $keep =~ ^[1-9][0-9]*$ ]]; then
  echo "HMS_BACKUP_KEEP_DAYS must be a whole number of days (1 or more), not '$keep'" >&2
  exit 2
fi

# libpq reads postgresql:// URLs; SQLAlchemy's driver suffix is not part of them.
url=${DATABASE_URL/#postgresql+psycopg:/postgresql:}
url=${url/#postgres:/postgresql:}

umask 077
mkdir -p "$dir"
file="$dir/hms-$(date -u +%Y%m%dT%H%M%SZ).dump"
pg_dump --format=custom --no-owner --no-privileges --file="$file.partial" --dbname="$url"
pg_restore --list "$file.partial" >/dev/null # a dump pg_restore cannot read is no backup
mv "$file.partial" "$file"

# Keep N days: remove the dumps modified more than N x 24 hours ago (and any .partial
# a crashed run left behind).
find "$dir" -maxdepth 1 -type f \( -name 'hms-*.dump' -o -name 'hms-*.dump.partial' \) \
  -mmin +$((keep * 24 * 60)) -print -delete >&2
echo "$file"
