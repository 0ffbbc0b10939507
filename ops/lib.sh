# Shared by ops/test.sh and ops/demo.sh: install and start what the project needs on a
# Debian machine, as root, only when it is missing.

log() { printf '[ops] %s\n' "$*" >&2; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    log "need root to apt-get install $*; install it and rerun"; return 1
  fi
  if [ -z "${MLC_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
    export MLC_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

ensure_nats_server() {
  if [ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1; then return 0; fi
  log "installing nats-server"
  apt_install nats-server
}

# Debian's Chromium and its WebDriver, for the console's browser tests (tests/tests/console.rs).
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then return 0; fi
  log "installing chromium and chromium-driver"
  apt_install chromium chromium-driver
}

ensure_rust() {
  command -v cargo >/dev/null 2>&1 || { log "cargo not found: install Rust (rustup) first"; return 1; }
}

# PostgreSQL on 127.0.0.1:5432 with trust auth for the tests' throw-away databases.
ensure_postgres() {
  local url="${MLC_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  if pg_ready; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql
  fi
  local ver; ver=$(ls /etc/postgresql | sort -V | tail -n1)
  if ! grep -q '^host all all 127.0.0.1/32 trust' "/etc/postgresql/$ver/main/pg_hba.conf"; then
    # Tests create and drop their own databases as `postgres`; trust on loopback only.
    sed -i '1i host all all 127.0.0.1/32 trust' "/etc/postgresql/$ver/main/pg_hba.conf"
  fi
  log "starting PostgreSQL $ver"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 2>/dev/null \
    || pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >&2 2>/dev/null || true
  for _ in $(seq 1 50); do pg_ready && return 0; sleep 0.2; done
  log "PostgreSQL is not accepting connections at $url"; return 1
}

pg_ready() {
  command -v psql >/dev/null 2>&1 || return 1
  psql "${MLC_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}" -Atc 'select 1' >/dev/null 2>&1
}
