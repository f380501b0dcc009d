#!/usr/bin/env bash
# Makes sure the local PostgreSQL and Redis the platform uses by default are installed
# and running. Used by .ci/run, `npm start` and `npm test`; safe to run repeatedly.
# Only acts on the local defaults (127.0.0.1:5432 and 127.0.0.1:6379).
# With --browser (npm test), also installs Debian's chromium when missing: the explorer's
# browser test (apps/explorer/src/browser.test.ts) drives it with playwright-core.
set -euo pipefail

pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! pg_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "ensure-services: installing PostgreSQL" >&2
    apt_install postgresql
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "ensure-services: starting PostgreSQL $ver" >&2
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 50); do pg_up && break; sleep 0.2; done
  pg_up || { echo "ensure-services: PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }
  # Local development uses trust auth for the postgres user over TCP, as on a fresh machine.
  hba=$(ls /etc/postgresql/"$ver"/main/pg_hba.conf)
  if ! grep -qE '^host\s+all\s+all\s+127.0.0.1/32\s+trust' "$hba"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload || true
  fi
fi

if ! redis_up; then
  if ! command -v redis-server >/dev/null; then
    echo "ensure-services: installing Redis" >&2
    apt_install redis-server
  fi
  echo "ensure-services: starting Redis" >&2
  mkdir -p /tmp/openledger-redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /tmp/openledger-redis --logfile /tmp/openledger-redis/redis.log
  for _ in $(seq 1 50); do redis_up && break; sleep 0.2; done
  redis_up || { echo "ensure-services: Redis did not start on 127.0.0.1:6379" >&2; exit 1; }
fi
# The test suite starts throw-away redis-server processes to test outages.
if ! command -v redis-server >/dev/null; then apt_install redis-server; fi
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null; then
  echo "ensure-services: installing Chromium (the explorer's browser test)" >&2
  apt_install chromium
fi
echo "ensure-services: PostgreSQL and Redis are up" >&2
