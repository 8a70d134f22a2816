#!/usr/bin/env bash
# rabbitmq-restart.sh: stops this run dir's RabbitMQ node and starts it again
# on the same port and data (durable queues and persistent messages survive),
# for fault tests. Returns once the node has started.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

load_ports
[[ -d $RMQ_BASE/mnesia ]] || die "no rabbitmq node for $SAGA_RUN_DIR: run start.sh"
rmq_stop
rmq_start
log "rabbitmq restarted on 127.0.0.1:$AMQP_PORT"
