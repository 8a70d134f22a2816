#!/usr/bin/env bash
# pg-restart.sh [fast|immediate]: restarts this run dir's PostgreSQL, for
# fault tests. fast (default) closes sessions cleanly; immediate stops without
# a checkpoint, like a crash, so the server recovers from WAL on start.
# Returns once the server accepts connections again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

mode=${1:-fast}
[[ $mode == fast || $mode == immediate ]] || die "usage: pg-restart.sh [fast|immediate]"
load_ports
[[ -f $PG_DATA/PG_VERSION ]] || die "no postgresql cluster for $SAGA_RUN_DIR: run start.sh"
as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -m "$mode" -w -t 60 -o "-p $PG_PORT" restart >/dev/null
log "postgresql restarted ($mode) on 127.0.0.1:$PG_PORT"
