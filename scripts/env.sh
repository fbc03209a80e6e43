# Shared set-up for scripts/demo and scripts/test: sourced, not run.
# Installs and starts what safeship's local runs need, reusing what already runs:
#   - a Python venv with moto[server], and a moto server on 127.0.0.1;
#   - PostgreSQL: DATABASE_URL if set, else 127.0.0.1:5432 if it answers, else a throwaway cluster;
#   - the AWS variables that point the SDK at moto (never real AWS).
# Every process started here is stopped on exit.

set -euo pipefail

SAFESHIP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SAFESHIP_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/safeship"
mkdir -p "$SAFESHIP_CACHE"
# Build outside the clone so repeated runs on one machine are incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SAFESHIP_CACHE/target}"

STARTED_PIDS=()
CLEANUP_DIRS=()
safeship_cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  if [ -n "${PG_TMP:-}" ] && [ -d "$PG_TMP" ]; then
    "${PG_RUNAS[@]}" "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  for d in "${CLEANUP_DIRS[@]:-}"; do
    if [ -n "$d" ]; then rm -rf "$d"; fi
  done
}
# Keep the script's own exit status: the cleanup must not turn a pass into a failure.
trap 'rc=$?; safeship_cleanup; exit $rc' EXIT

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

apt_install() {
  command -v apt-get >/dev/null || return 1
  say "installing $* with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# --- Python venv with moto ---------------------------------------------------------------------
ensure_venv() {
  VENV="$SAFESHIP_CACHE/venv"
  command -v python3 >/dev/null || apt_install python3 || die "python3 is needed: install Python 3"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating a Python venv in $VENV"
    python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$VENV"; } ||
      die "cannot create a Python venv: install python3-venv"
  fi
  if ! "$VENV/bin/python" -c 'import moto, flask, flask_cors, cfnlint' 2>/dev/null; then
    say "installing moto[server] and cfn-lint into the venv"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5.1,<6' 'cfn-lint>=1,<2' ||
      die "pip could not install moto[server] and cfn-lint"
  fi
}

# --- a second venv for the template's linters ---------------------------------------------------
# Apart from moto's: checkov pins boto3/botocore to versions older than moto's, and must not change
# what the moto server runs on.
ensure_lint_venv() {
  LINT_VENV="$SAFESHIP_CACHE/lint-venv"
  command -v python3 >/dev/null || apt_install python3 || die "python3 is needed: install Python 3"
  if [ ! -x "$LINT_VENV/bin/python" ]; then
    say "creating a Python venv for the template linters in $LINT_VENV"
    python3 -m venv "$LINT_VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$LINT_VENV"; } ||
      die "cannot create a Python venv: install python3-venv"
  fi
  if ! "$LINT_VENV/bin/python" -c 'import cfnlint, samtranslator, checkov, parliament' 2>/dev/null; then
    say "installing cfn-lint, aws-sam-translator, checkov and parliament into $LINT_VENV"
    "$LINT_VENV/bin/pip" install --quiet --disable-pip-version-check 'cfn-lint>=1.58,<2' \
      'aws-sam-translator>=1.100,<2' 'checkov>=3.3,<4' 'parliament>=1.6,<2' ||
      die "pip could not install the template linters"
  fi
}

moto_answers() { curl -fsS -m 2 "$1/moto-api/" >/dev/null 2>&1; }

# --- moto server --------------------------------------------------------------------------------
ensure_moto() {
  command -v curl >/dev/null || apt_install curl || die "curl is needed"
  if [ -n "${SAFESHIP_MOTO_ENDPOINT:-}" ]; then
    moto_answers "$SAFESHIP_MOTO_ENDPOINT" || die "SAFESHIP_MOTO_ENDPOINT=$SAFESHIP_MOTO_ENDPOINT does not answer"
    say "reusing moto at $SAFESHIP_MOTO_ENDPOINT"
  else
    ensure_venv
    local port; port=$(free_port)
    SAFESHIP_MOTO_ENDPOINT="http://127.0.0.1:$port"
    # The reliability suite builds hundreds of worlds, each with an RDS instance (and moto's
    # automated snapshot of it): moto's default account limit of 1,000 snapshots is too few.
    MOTO_RDS_SNAPSHOT_LIMIT=100000 \
      "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$SAFESHIP_CACHE/moto.log" 2>&1 &
    STARTED_PIDS+=($!)
    local i
    for i in $(seq 1 100); do
      moto_answers "$SAFESHIP_MOTO_ENDPOINT" && break
      kill -0 "${STARTED_PIDS[-1]}" 2>/dev/null || die "moto_server exited: see $SAFESHIP_CACHE/moto.log"
      sleep 0.2
    done
    moto_answers "$SAFESHIP_MOTO_ENDPOINT" || die "moto did not answer at $SAFESHIP_MOTO_ENDPOINT within 20 s"
    say "moto started at $SAFESHIP_MOTO_ENDPOINT"
  fi
  export SAFESHIP_MOTO_ENDPOINT
  # The organisation tests start a moto of their own that enforces IAM.
  ensure_venv
  export SAFESHIP_MOTO_SERVER="$VENV/bin/moto_server"
  # The SDK reaches moto only through its standard settings; static credentials keep it off real AWS.
  export AWS_ENDPOINT_URL="$SAFESHIP_MOTO_ENDPOINT"
  export AWS_REGION="${AWS_REGION:-eu-west-1}"
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
  unset AWS_PROFILE AWS_SESSION_TOKEN
}

# --- PostgreSQL ---------------------------------------------------------------------------------
find_pg_bin() {
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ]
}

pg_answers() { "$PG_BIN/psql" "$1" -qAtc 'select 1' >/dev/null 2>&1 || psql "$1" -qAtc 'select 1' >/dev/null 2>&1; }

ensure_postgres() {
  find_pg_bin || PG_BIN=""
  if [ -n "${DATABASE_URL:-}" ]; then
    pg_answers "$DATABASE_URL" || die "DATABASE_URL is set but PostgreSQL does not answer there"
    say "reusing PostgreSQL at DATABASE_URL"
  elif pg_answers "postgresql://postgres@127.0.0.1:5432/postgres"; then
    export DATABASE_URL="postgresql://postgres@127.0.0.1:5432/postgres"
    say "reusing PostgreSQL on 127.0.0.1:5432"
  else
    if [ -z "$PG_BIN" ]; then
      apt_install postgresql || die "PostgreSQL is needed: install the postgresql package (or set DATABASE_URL)"
      find_pg_bin || die "postgresql installed but no initdb found under /usr/lib/postgresql"
    fi
    local port; port=$(free_port)
    PG_TMP=$(mktemp -d /tmp/safeship-pg.XXXXXX)
    CLEANUP_DIRS+=("$PG_TMP")
    chmod 755 "$PG_TMP"
    # initdb refuses to run as root: the cluster belongs to the postgres user.
    PG_RUNAS=()
    if [ "$(id -u)" = 0 ]; then
      id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
      chown postgres "$PG_TMP"
      PG_RUNAS=(runuser -u postgres --)
    fi
    "${PG_RUNAS[@]}" "$PG_BIN/initdb" -D "$PG_TMP/data" -A trust -U postgres >/dev/null ||
      die "initdb failed"
    # TLS on, as on RDS: the integrity check's sslmode tests need a server that speaks it.
    command -v openssl >/dev/null || apt_install openssl || die "openssl is needed for the test server's certificate"
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=safeship-test-postgres" \
      -keyout "$PG_TMP/server.key" -out "$PG_TMP/server.crt" >/dev/null 2>&1 ||
      die "openssl could not make the test server's certificate"
    chmod 600 "$PG_TMP/server.key"
    [ "$(id -u)" = 0 ] && chown postgres "$PG_TMP/server.key" "$PG_TMP/server.crt"
    "${PG_RUNAS[@]}" "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/log" -w \
      -o "-p $port -k $PG_TMP -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on -c ssl_cert_file=$PG_TMP/server.crt -c ssl_key_file=$PG_TMP/server.key" start >/dev/null ||
      die "PostgreSQL did not start: see $PG_TMP/log"
    export DATABASE_URL="postgresql://postgres@127.0.0.1:$port/postgres"
    say "started a throwaway PostgreSQL on 127.0.0.1:$port"
  fi
}
