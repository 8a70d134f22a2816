#!/usr/bin/env bash
# stop.sh: stops what start.sh and demo.sh started for this run dir
# (SAGA_RUN_DIR): the demo's sagad and participant, the Kafka dev broker,
# the RabbitMQ node and its epmd, PostgreSQL. Fine when nothing runs. With
# --purge also deletes the stack's data (PostgreSQL cluster, RabbitMQ
# mnesia, logs, env file, the demo folder).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

purge=0
case "${1:-}" in
--purge) purge=1 ;;
"") ;;
*) die "usage: stop.sh [--purge]" ;;
esac

stop_kafka() {
    local pid
    if pid=$(kafka_pid); then
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || { log "kafka dev broker $pid did not stop, killing it"; kill -KILL "$pid" 2>/dev/null || true; }
        log "kafka dev broker stopped"
    fi
    rm -f "$KAFKA_PID" "$KAFKA_BOOTSTRAP"
}

stop_pg() {
    if pg_running; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
        log "postgresql stopped"
    fi
}

load_ports
demo_stop
stop_kafka
rmq_stop
stop_pg
rm -f "$ENV_FILE"
if ((purge)); then
    rm -rf "$PG_BASE" "$RMQ_BASE" "$STACK_CONF" "$KAFKA_LOG" "$KAFKA_CONTROL" "$SAGA_RUN_DIR/postgresql" \
        "$DEMO_DIR"
    rmdir "$SAGA_RUN_DIR" 2>/dev/null || true
    log "stack data purged"
fi
