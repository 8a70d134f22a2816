# common.sh: settings and helpers shared by the local stack scripts
# (start.sh, stop.sh, pg-restart.sh, rabbitmq-restart.sh). Sourced, not run.
#
# One stack = one run dir (SAGA_RUN_DIR, default <repo>/.run). Everything a
# stack owns is found from its run dir, so several stacks can run side by side
# when they use different run dirs and ports:
#   PostgreSQL  data, socket and log in /tmp/saga-pg-<key> (key = hash of the
#               run dir): the postgres user must reach them even when the
#               repository lives under a folder only root can enter
#   RabbitMQ    node saga-<key>@localhost, mnesia/log/cookie under the run dir,
#               its own epmd on a private port
#   Kafka       tests/tools/kafka-dev-broker, pid/log/bootstrap/control FIFO
#               in the run dir
# Ports (env, first start only; later runs read them back from stack.conf):
#   SAGA_PG_PORT (55432), SAGA_AMQP_PORT (55672),
#   SAGA_AMQP_DIST_PORT (SAGA_AMQP_PORT+10), SAGA_EPMD_PORT (SAGA_AMQP_PORT+11)

SAGA_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SAGA_RUN_DIR=${SAGA_RUN_DIR:-$SAGA_REPO/.run}
mkdir -p "$SAGA_RUN_DIR"
SAGA_RUN_DIR=$(cd "$SAGA_RUN_DIR" && pwd)
RUN_KEY=$(printf '%s' "$SAGA_RUN_DIR" | sha256sum | cut -c1-10)
STACK_CONF=$SAGA_RUN_DIR/stack.conf
ENV_FILE=$SAGA_RUN_DIR/env

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# Ports from the environment or the defaults.
env_ports() {
    PG_PORT=${SAGA_PG_PORT:-55432}
    AMQP_PORT=${SAGA_AMQP_PORT:-55672}
    AMQP_DIST_PORT=${SAGA_AMQP_DIST_PORT:-$((AMQP_PORT + 10))}
    EPMD_PORT=${SAGA_EPMD_PORT:-$((AMQP_PORT + 11))}
}

# Ports of the stack as it was started (stack.conf), else env_ports.
load_ports() {
    if [[ -f $STACK_CONF ]]; then
        # shellcheck disable=SC1090
        source "$STACK_CONF"
    else
        env_ports
    fi
}

save_ports() {
    printf 'PG_PORT=%q\nAMQP_PORT=%q\nAMQP_DIST_PORT=%q\nEPMD_PORT=%q\n' \
        "$PG_PORT" "$AMQP_PORT" "$AMQP_DIST_PORT" "$EPMD_PORT" >"$STACK_CONF"
}

# Quotes $1 for a POSIX shell: 'text', with ' written as '\''.
shq() {
    printf "'%s'" "${1//\'/\'\\\'\'}"
}

# True when something accepts connections on 127.0.0.1:$1.
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ---- PostgreSQL -------------------------------------------------------------

PG_BIN=${SAGA_PG_BIN:-/usr/lib/postgresql/15/bin}
PG_BASE=/tmp/saga-pg-$RUN_KEY
PG_DATA=$PG_BASE/data
PG_LOG=$PG_BASE/postgres.log

# Runs a command as the postgres user (initdb and the server refuse root),
# from / since the current folder may be closed to that user.
as_pg() {
    if [[ $(id -u) == 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pg_running() {
    [[ -f $PG_DATA/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_psql() {
    as_pg "$PG_BIN/psql" -X -q -h "$PG_BASE" -p "$PG_PORT" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 "$@"
}

# ---- RabbitMQ ---------------------------------------------------------------

RMQ_BASE=$SAGA_RUN_DIR/rabbitmq
RMQ_NODE=saga-$RUN_KEY@localhost
RMQ_SBIN=/usr/lib/rabbitmq/bin
[[ -x $RMQ_SBIN/rabbitmq-server ]] || RMQ_SBIN=$(dirname "$(command -v rabbitmq-server 2>/dev/null || echo /usr/sbin/rabbitmq-server)")

# Runs a RabbitMQ script with this stack's node, dirs, ports and cookie.
rmq() {
    local tool=$1
    shift
    env HOME="$RMQ_BASE/home" \
        RABBITMQ_NODENAME="$RMQ_NODE" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$AMQP_PORT" \
        RABBITMQ_DIST_PORT="$AMQP_DIST_PORT" \
        RABBITMQ_MNESIA_BASE="$RMQ_BASE/mnesia" \
        RABBITMQ_LOG_BASE="$RMQ_BASE/log" \
        RABBITMQ_PID_FILE="$RMQ_BASE/rabbitmq.pid" \
        RABBITMQ_CONFIG_FILE="$RMQ_BASE/rabbitmq.conf" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$RMQ_BASE/advanced.config" \
        RABBITMQ_CONF_ENV_FILE="$RMQ_BASE/rabbitmq-env.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_BASE/enabled_plugins" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        ERL_EPMD_PORT="$EPMD_PORT" \
        ERL_EPMD_ADDRESS=127.0.0.1 \
        "$RMQ_SBIN/$tool" "$@"
}

# Pid of this stack's node when it runs (recorded by rmq_start).
rmq_pid() {
    local pid
    pid=$(cat "$RMQ_BASE/rabbitmq.pid" 2>/dev/null) || return 1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    grep -qzx -- "RABBITMQ_NODENAME=$RMQ_NODE" "/proc/$pid/environ" 2>/dev/null || return 1
    echo "$pid"
}

# True when epmd of this stack knows the node (cheap: no Erlang VM started).
rmq_registered() {
    ERL_EPMD_PORT=$EPMD_PORT epmd -names 2>/dev/null | grep -q "^name ${RMQ_NODE%@*} "
}

rmq_running() {
    rmq_pid >/dev/null && rmq_registered
}

rmq_prepare() {
    mkdir -p "$RMQ_BASE/home" "$RMQ_BASE/mnesia" "$RMQ_BASE/log"
    : >"$RMQ_BASE/rabbitmq-env.conf"
    echo '[].' >"$RMQ_BASE/enabled_plugins"
    echo '[].' >"$RMQ_BASE/advanced.config"
    cat >"$RMQ_BASE/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
loopback_users.guest = true
log.file.level = info
log.console = false
CONF
}

# Starts the node detached, waits until it registers with epmd (await_startup
# gives up at once on a node that is not there yet), then until it has
# started, and records its OS pid.
rmq_start() {
    local i pid
    rmq_prepare
    rmq rabbitmq-server -detached >"$RMQ_BASE/start.log" 2>&1 ||
        die "rabbitmq-server failed to start, see $RMQ_BASE/start.log"
    for ((i = 0; i < 600; i++)); do
        rmq_registered && break
        sleep 0.1
    done
    if ! rmq_registered || ! rmq rabbitmqctl -q -n "$RMQ_NODE" await_startup --timeout 120 \
        >>"$RMQ_BASE/start.log" 2>&1; then
        tail -n 20 "$RMQ_BASE/start.log" >&2 || true
        die "rabbitmq node $RMQ_NODE did not start, see $RMQ_BASE/log"
    fi
    pid=$(rmq rabbitmqctl -q -n "$RMQ_NODE" eval 'os:getpid().' | tr -dc 0-9)
    [[ -n $pid ]] || die "cannot read the pid of rabbitmq node $RMQ_NODE"
    echo "$pid" >"$RMQ_BASE/rabbitmq.pid"
}

# Stops the node and its private epmd; fine when neither runs.
rmq_stop() {
    local pid
    if pid=$(rmq_pid) || rmq_registered; then
        rmq rabbitmqctl -q -n "$RMQ_NODE" shutdown --timeout 60 >/dev/null 2>&1 || true
        if [[ -n ${pid:-} ]] && ! wait_gone "$pid" 30; then
            log "rabbitmq pid $pid did not stop, killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "rabbitmq stopped"
    fi
    rm -f "$RMQ_BASE/rabbitmq.pid"
    if [[ -d $RMQ_BASE/home ]]; then
        ERL_EPMD_PORT=$EPMD_PORT epmd -kill >/dev/null 2>&1 || true
    fi
}

# ---- Kafka dev broker -------------------------------------------------------

KAFKA_PID=$SAGA_RUN_DIR/kafka.pid
KAFKA_LOG=$SAGA_RUN_DIR/kafka.log
KAFKA_BOOTSTRAP=$SAGA_RUN_DIR/kafka.bootstrap
KAFKA_CONTROL=$SAGA_RUN_DIR/kafka.control

kafka_pid() {
    local pid
    [[ -f $KAFKA_PID ]] || return 1
    pid=$(cat "$KAFKA_PID" 2>/dev/null) || return 1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    grep -qzx -- "$KAFKA_BOOTSTRAP" "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

kafka_running() {
    kafka_pid >/dev/null && [[ -s $KAFKA_BOOTSTRAP ]]
}

# The broker program: $SAGA_KAFKA_DEV_BROKER, else a build of this checkout;
# built into <repo>/build when there is none.
kafka_binary() {
    local b
    for b in "${SAGA_KAFKA_DEV_BROKER:-}" "${SAGA_BINARY_DIR:+$SAGA_BINARY_DIR/tests/tools/kafka-dev-broker}" \
             "$SAGA_REPO/build/tests/tools/kafka-dev-broker" \
             "$SAGA_REPO/build-asan/tests/tools/kafka-dev-broker"; do
        [[ -n $b && -x $b ]] && { echo "$b"; return 0; }
    done
    log "building kafka-dev-broker in $SAGA_REPO/build"
    cmake -S "$SAGA_REPO" -B "$SAGA_REPO/build" -DCMAKE_BUILD_TYPE=Debug >&2 &&
        cmake --build "$SAGA_REPO/build" --target kafka-dev-broker -j"$(nproc)" >&2 ||
        die "cannot build kafka-dev-broker"
    echo "$SAGA_REPO/build/tests/tools/kafka-dev-broker"
}

# Waits up to $2 seconds for pid $1 to exit.
wait_gone() {
    local pid=$1 i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

# ---- demo processes (deploy/local/demo.sh) ------------------------------------

DEMO_DIR=$SAGA_RUN_DIR/demo

# Pid of the demo's program $1 (sagad, participant) when it runs: the pid
# file's process must have been started with the demo folder in its command
# line, so a reused pid is never taken for it.
demo_pid() {
    local pid
    pid=$(cat "$DEMO_DIR/$1.pid" 2>/dev/null) || return 1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$DEMO_DIR" || return 1
    echo "$pid"
}

# Stops the demo's sagad and participant (SIGTERM, then up to 30 s).
demo_stop() {
    local name pid
    for name in sagad participant; do
        if pid=$(demo_pid "$name"); then
            kill -TERM "$pid" 2>/dev/null || true
            wait_gone "$pid" 30 || { log "demo $name $pid did not stop, killing it"; kill -KILL "$pid" 2>/dev/null || true; }
            log "demo $name stopped"
        fi
        rm -f "$DEMO_DIR/$name.pid"
    done
}
