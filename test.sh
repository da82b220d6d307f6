#!/usr/bin/env bash
# The README's test command: provisions a Debian machine for the whole suite and runs it, nothing skipped.
#
#   ./test.sh [ARGS…]     ARGS go to `cargo test --all-targets --no-fail-fast` (a filter, `-- --nocapture`, …)
#
# 1. installs the system tools the tests drive (the one install list, also CI's: .ci/run calls this script),
# 2. installs, starts and opens PostgreSQL and MariaDB for the store tests: `postgres://postgres@127.0.0.1:5432/test`
#    (trust login for the role `postgres` to the database `test` from 127.0.0.1) and `mysql://root@127.0.0.1:3306/test`
#    (a passwordless `root@127.0.0.1`): meant for a development or CI machine, not a production database server,
# 3. sets GDPRD_TEST_POSTGRES_URL / GDPRD_TEST_MYSQL_URL (kept when already set) and runs `cargo test --all-targets`,
# 4. ends with the number of skipped tests; with CI=true a skipped test fails the run.
# Installing needs root: run it as root, or as a user who may sudo. Each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "needs root for: $* (run as root, or install sudo)"
    fi
}

command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain first (https://rustup.rs), then rerun"

# The one install list: every system package the build and the tests need, each with what needs it.
missing_packages() {
    # Building: a C compiler for aws-lc (TLS, SSH), ring (via the mysql crate) and the bundled SQLite.
    command -v cc >/dev/null || echo gcc libc6-dev
    # The embedded SFTP server is tested through the real OpenSSH client; the remote SFTP account tests start
    # their own OpenSSH server (never the system's).
    command -v sftp >/dev/null || echo openssh-client
    [ -x /usr/sbin/sshd ] || echo openssh-server
    # The unit file is checked with systemd-analyze (verify and an offline security score).
    command -v systemd-analyze >/dev/null || echo systemd
    # The SFTP tests drive third-party clients besides OpenSSH and paramiko: curl's sftp:// (libssh2) and lftp;
    # prlimit lowers the daemon's file-handle limit in the accept back-off test.
    command -v curl >/dev/null || echo curl
    command -v lftp >/dev/null || echo lftp
    command -v prlimit >/dev/null || echo util-linux
    # The progress bar test runs gdprd under script(1) for a terminal.
    command -v script >/dev/null || echo bsdutils
    # paramiko (a second SFTP client, password logins) lives in a venv under target/tmp/, from PyPI.
    command -v python3 >/dev/null || echo python3
    python3 -c 'import ensurepip' 2>/dev/null || echo python3-venv
    # The PostgreSQL and MySQL store tests run against real servers on this machine.
    command -v pg_ctlcluster >/dev/null || echo postgresql
    [ -x /usr/sbin/mariadbd ] || echo mariadb-server
    command -v mariadb >/dev/null || echo mariadb-client
    return 0
}

need=$(missing_packages | tr '\n' ' ')
fresh_mariadb=false
if [ -n "${need// /}" ]; then
    say "installing: $need"
    [[ $need == *mariadb-server* ]] && fresh_mariadb=true
    # shellcheck disable=SC2086 # one word per package
    as_root env DEBIAN_FRONTEND=noninteractive sh -c "apt-get update -qq && apt-get install -y -qq $need"
fi

systemd_running() { [ -d /run/systemd/system ]; }

# PostgreSQL: Debian's cluster (created by the package), started, with the role and database the tests use.
export GDPRD_TEST_POSTGRES_URL=${GDPRD_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
pg_login() { PGCONNECT_TIMEOUT=5 psql "$GDPRD_TEST_POSTGRES_URL" -Atqc 'SELECT 1' >/dev/null 2>&1; }
as_postgres() { as_root runuser -u postgres -- "$@"; }
if ! pg_up; then
    say "starting PostgreSQL"
    if systemd_running; then
        as_root systemctl start postgresql
    else
        for conf in /etc/postgresql/*/main; do
            as_root pg_ctlcluster --skip-systemctl-redirect "$(basename "$(dirname "$conf")")" main start
        done
    fi
    for _ in $(seq 60); do pg_up && break; sleep 1; done
    pg_up || die "PostgreSQL did not start on 127.0.0.1:5432"
fi
if ! pg_login; then
    say "opening PostgreSQL for the tests: trust for postgres@127.0.0.1 to the database test"
    hba=$(as_postgres psql -Atqc 'SHOW hba_file')
    line='host test postgres 127.0.0.1/32 trust # gdprd test.sh'
    as_root grep -qxF "$line" "$hba" || as_root sed -i "1i $line" "$hba"
    as_postgres psql -Atqc 'SELECT pg_reload_conf()' >/dev/null
    as_postgres psql -Atqc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 ||
        as_postgres createdb test
    pg_login || die "cannot log in to $GDPRD_TEST_POSTGRES_URL"
fi

# MariaDB: started, with a passwordless root@127.0.0.1 and the database test. Name resolution is off so that a
# connection from 127.0.0.1 is root@127.0.0.1 and not Debian's socket-only root@localhost.
export GDPRD_TEST_MYSQL_URL=${GDPRD_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
my_up() { mariadb-admin -h 127.0.0.1 -u root --connect-timeout=2 ping >/dev/null 2>&1 || as_root mariadb-admin ping >/dev/null 2>&1; }
my_login() { mariadb -h 127.0.0.1 -u root --connect-timeout=5 -e 'SELECT 1' test >/dev/null 2>&1; }
my_conf=/etc/mysql/mariadb.conf.d/60-gdprd-tests.cnf
my_configure() {
    [ -d "$(dirname "$my_conf")" ] || return 0
    printf '# Written by gdprd test.sh\n[mariadbd]\nskip-name-resolve\nbind-address = 127.0.0.1\n' |
        as_root tee "$my_conf" >/dev/null
}
my_start() {
    if systemd_running; then
        as_root systemctl restart mariadb
    else
        as_root install -d -o mysql -g mysql /run/mysqld
        if my_up; then as_root mariadb-admin shutdown; fi
        as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    fi
    for _ in $(seq 60); do my_up && break; sleep 1; done
    my_up || die "MariaDB did not start"
}
if $fresh_mariadb; then
    my_configure
    say "starting MariaDB"
    my_start
elif ! my_up; then
    say "starting MariaDB"
    my_start
fi
if ! my_login; then
    say "opening MariaDB for the tests: root@127.0.0.1 without password, database test"
    as_root mariadb -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
        GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
        CREATE DATABASE IF NOT EXISTS test;"
    if ! my_login && [ ! -f "$my_conf" ]; then
        my_configure
        say "restarting MariaDB without name resolution"
        my_start
    fi
    my_login || die "cannot log in to $GDPRD_TEST_MYSQL_URL"
fi

# The suite. A test that cannot run writes a `skipping:` line straight to the terminal; they are counted here.
mkdir -p target
log=target/test.sh.log
say "cargo test --all-targets --no-fail-fast $*"
set +e
cargo test --all-targets --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
skips=$(grep -o 'skipping: .*' "$log" | sort -u)
set -e
skipped=$(printf '%s' "$skips" | grep -c . || true)
echo
[ -z "$skips" ] || printf '%s\n' "$skips" | sed 's/^/    /'
echo "test.sh: cargo test exited with $status; $skipped skipped (full output: $log)"
if [ "$status" -ne 0 ]; then
    exit "$status"
fi
if [ "$skipped" -gt 0 ] && [ "${CI:-}" = true ]; then
    echo "test.sh: CI=true and $skipped test(s) skipped: failing" >&2
    exit 1
fi
