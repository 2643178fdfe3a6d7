#!/usr/bin/env bash
# Installs the Debian packages the test PBX and the test suite need, when they are missing,
# and makes sure a PostgreSQL answers on 127.0.0.1:5432 (installing and starting one if not).
# Idempotent: a second run installs nothing. Needs root (apt-get, chroot).
set -euo pipefail

die() { printf '\nsetup: %s\n  fix: %s\n\n' "$1" "$2" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "the test PBX needs root (apt-get, debootstrap, chroot)" \
    "run make as root, e.g. sudo make test"
command -v apt-get >/dev/null || die "apt-get not found: this setup is for Debian (12 or later)" \
    "use a Debian machine, or docker-compose.yml on a machine with a Docker engine"

# command -> package, from the one list the Docker images install from too
packages="$(dirname "$0")/../testpbx/packages/host.txt"
[ -r "$packages" ] || die "$packages is missing" "restore it: it ships with the repository"
declare -A wanted=()
while read -r cmd pkg _; do
  [[ -z "$cmd" || "$cmd" == \#* ]] && continue
  [ -n "$pkg" ] || die "$packages: no package for the command $cmd" "write: COMMAND PACKAGE"
  wanted[$cmd]=$pkg
done < "$packages"
missing=()
for cmd in "${!wanted[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${wanted[$cmd]}")
done
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
started_pg=""
if ! pg_up; then
  if ls /etc/postgresql/*/main >/dev/null 2>&1; then
    :
  else
    missing+=(postgresql)
  fi
fi
# The outage test runs a PostgreSQL server of its own (testpbx/postgres.py): it needs the
# server's binaries even where the database on 5432 is another machine's.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [[ " ${missing[*]} " != *" postgresql "* ]]; then
  missing+=(postgresql)
fi

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  echo "setup: installing $*"
  if ! apt-get install -y -q --no-install-recommends "$@" >/tmp/ivr-apt.log 2>&1; then
    apt-get update -q >>/tmp/ivr-apt.log 2>&1 || true
    apt-get install -y -q --no-install-recommends "$@" >>/tmp/ivr-apt.log 2>&1 \
      || die "apt-get could not install $* (log: /tmp/ivr-apt.log)" \
             "check the Debian mirror in /etc/apt/sources.list and run: apt-get update"
  fi
}
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi

if ! pg_up; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  [ -n "$version" ] || die "PostgreSQL is installed but has no cluster" \
      "pg_createcluster --start 15 main (or your version)"
  echo "setup: starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >/tmp/ivr-pg.log 2>&1 || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || die "PostgreSQL does not answer on 127.0.0.1:5432 (log: /tmp/ivr-pg.log)" \
      "pg_ctlcluster $version main start; check listen_addresses and port in /etc/postgresql/$version/main/postgresql.conf"
  started_pg="$version"
fi
if [ -n "$started_pg" ] && [ -n "${IVR_STATE_DIR:-}" ]; then
  mkdir -p "$IVR_STATE_DIR" && echo "$started_pg" > "$IVR_STATE_DIR/started-postgresql"
fi
exit 0
