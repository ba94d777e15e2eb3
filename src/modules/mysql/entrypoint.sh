#!/bin/sh
# The entrypoint of the MariaDB image testdock makes from this machine's
# install. It honours the official image's contract -- MARIADB_* (or
# MYSQL_*) ROOT_PASSWORD, ALLOW_EMPTY_ROOT_PASSWORD, DATABASE, USER,
# PASSWORD, and /docker-entrypoint-initdb.d -- over a data directory that
# was initialised when the image was built (root without a password), so a
# start only copies it into the data directory and applies the accounts
# with --init-file, without a second server start.
# Runs as the mysql user (uid 999): the data directory must be writable by
# it, e.g. a tmpfs mounted with uid=999,gid=999.
set -eu

case "${1:-}" in
mariadbd | mysqld) ;;
*) exec "$@" ;;
esac

datadir=/var/lib/mysql
root_password="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"
allow_empty="${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-${MYSQL_ALLOW_EMPTY_PASSWORD:-}}"
database="${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}"
user="${MARIADB_USER:-${MYSQL_USER:-}}"
password="${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}"

# SQL string literals and identifiers, quoted.
lit() { printf "'%s'" "$(printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/''/g")"; }
ident() { printf '`%s`' "$(printf '%s' "$1" | sed 's/`/``/g')"; }

if [ -d "$datadir/mysql" ]; then
	exec "$@"
fi
if [ -z "$root_password" ] && [ -z "$allow_empty" ]; then
	echo "docker-entrypoint.sh: the database is uninitialized and no root password is given;" >&2
	echo "  set MARIADB_ROOT_PASSWORD or MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1" >&2
	exit 1
fi

cp -RPp /var/lib/mysql-init/. "$datadir/"

# One statement a line: the server reads an init file line by line.
init=/run/mysqld/init.sql
{
	echo "DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1';"
	echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(lit "$root_password");"
	echo "CREATE USER 'root'@'%' IDENTIFIED BY $(lit "$root_password");"
	echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
	if [ -n "$database" ]; then
		echo "CREATE DATABASE IF NOT EXISTS $(ident "$database");"
	fi
	if [ -n "$user" ] && [ "$user" != root ]; then
		echo "CREATE USER $(lit "$user")@'%' IDENTIFIED BY $(lit "$password");"
		if [ -n "$database" ]; then
			echo "GRANT ALL ON $(ident "$database").* TO $(lit "$user")@'%';"
		fi
	fi
} >"$init"

scripts=$(ls /docker-entrypoint-initdb.d 2>/dev/null || true)
if [ -z "$scripts" ]; then
	exec "$@" --init-file="$init"
fi

# Init scripts run against a server that listens on no TCP port, so
# nothing outside sees the database before they are done.
"$@" --init-file="$init" --skip-networking &
pid=$!
client() { mariadb --protocol=socket -uroot ${root_password:+"-p$root_password"} "$@"; }
tries=0
until client -e 'SELECT 1' >/dev/null 2>&1; do
	tries=$((tries + 1))
	if [ "$tries" -gt 600 ] || ! kill -0 "$pid" 2>/dev/null; then
		echo "docker-entrypoint.sh: the init server did not start" >&2
		exit 1
	fi
	sleep 0.1
done
for f in /docker-entrypoint-initdb.d/*; do
	case "$f" in
	*.sh)
		if [ -x "$f" ]; then "$f"; else . "$f"; fi
		;;
	*.sql)
		client ${database:+"--database=$database"} <"$f"
		;;
	*)
		echo "docker-entrypoint.sh: ignoring $f" >&2
		;;
	esac
done
kill "$pid"
wait "$pid" || true
exec "$@"
