#!/bin/sh
# The entrypoint of the PostgreSQL image testdock makes from this machine's
# install. It honours the official image's contract -- POSTGRES_USER,
# POSTGRES_PASSWORD, POSTGRES_DB, PGDATA, /docker-entrypoint-initdb.d --
# over a cluster that was initialised when the image was built (user
# postgres, password postgres), so a start only copies it into PGDATA.
# Runs as the postgres user (uid 999): PGDATA must be writable by it, e.g.
# a tmpfs mounted with uid=999,gid=999.
set -eu

if [ "${1:-}" != postgres ]; then
	exec "$@"
fi

user="${POSTGRES_USER:-postgres}"
password="${POSTGRES_PASSWORD:-}"
db="${POSTGRES_DB:-$user}"

# SQL literals and identifiers, quoted.
lit() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }
ident() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	cp -RPp /var/lib/postgresql/initdb/. "$PGDATA/"
	chmod 700 "$PGDATA"

	# Only what differs from the baked cluster costs a single-user run.
	# Single-user mode ends a statement at a newline: one per line.
	sql=""
	if [ "$user" != postgres ]; then
		sql="${sql}CREATE ROLE $(ident "$user") SUPERUSER LOGIN
"
	fi
	if [ "$user" != postgres ] || [ "$password" != postgres ]; then
		if [ -n "$password" ]; then
			sql="${sql}ALTER ROLE $(ident "$user") PASSWORD $(lit "$password")
"
		else
			sql="${sql}ALTER ROLE $(ident "$user") PASSWORD NULL
"
		fi
	fi
	if [ "$db" != postgres ]; then
		sql="${sql}CREATE DATABASE $(ident "$db") OWNER $(ident "$user")
"
	fi
	if [ -n "$sql" ]; then
		printf '%s' "$sql" | postgres --single -D "$PGDATA" postgres >/dev/null
	fi

	# Init scripts run against a server that listens on no TCP port, so
	# nothing outside sees the database before they are done.
	scripts=$(ls /docker-entrypoint-initdb.d 2>/dev/null || true)
	if [ -n "$scripts" ]; then
		pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
		for f in /docker-entrypoint-initdb.d/*; do
			case "$f" in
			*.sh)
				if [ -x "$f" ]; then "$f"; else . "$f"; fi
				;;
			*.sql)
				psql -X -q -v ON_ERROR_STOP=1 -U "$user" -d "$db" -f "$f"
				;;
			*)
				echo "docker-entrypoint.sh: ignoring $f" >&2
				;;
			esac
		done
		pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
	fi
fi

exec "$@"
