#!/usr/bin/env bash
# Make sure the real services the tests talk to are here and running:
# PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`) and Chromium for the dashboard.
# Installs Debian packages when missing (needs root or sudo). Safe to run again.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
apt_updated=""
apt_install() {
    if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if ! pg_ready; then
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "services: installing PostgreSQL"
        apt_install postgresql postgresql-client
    fi
    version=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -n 1)
    if [ -z "$version" ]; then
        echo "services: no PostgreSQL cluster found after install" >&2
        exit 1
    fi
    conf=/etc/postgresql/$version/main
    # trust local TCP connections (test machines only) and listen on loopback
    if ! grep -q "cairn-tests" "$conf/pg_hba.conf"; then
        $SUDO sh -c "printf '# cairn-tests\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' | cat - '$conf/pg_hba.conf' > /tmp/pg_hba.new && mv /tmp/pg_hba.new '$conf/pg_hba.conf'"
    fi
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
        || $SUDO pg_ctlcluster "$version" main start
    for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
fi
if ! psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" postgres 2>/dev/null | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE test" postgres
fi
echo "services: PostgreSQL ready on 127.0.0.1:5432"


if [ "${CAIRN_SKIP_BROWSER:-}" != 1 ] && [ ! -x /usr/bin/chromium ]; then
    echo "services: installing Chromium (dashboard tests drive it headless)"
    apt_install chromium
fi
[ -x /usr/bin/chromium ] && echo "services: Chromium at /usr/bin/chromium"

# A real OpenID Connect provider for the single sign-on tests (node-oidc-provider).
OIDC_DIR=${CAIRN_TEST_OIDC_DIR:-$HOME/.cache/cairn-tests/oidc-provider}
if [ "${CAIRN_SKIP_OIDC:-}" != 1 ]; then
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "services: installing Node.js (the single sign-on tests run a real OpenID provider)"
        apt_install nodejs npm
    fi
    if [ ! -f "$OIDC_DIR/node_modules/oidc-provider/package.json" ]; then
        mkdir -p "$OIDC_DIR"
        npm install --silent --no-audit --no-fund --prefix "$OIDC_DIR" oidc-provider@8.8.1 >/dev/null
    fi
    echo "services: oidc-provider $(node -p "require('$OIDC_DIR/node_modules/oidc-provider/package.json').version") in $OIDC_DIR"
fi
true
