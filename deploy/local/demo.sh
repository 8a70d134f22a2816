#!/usr/bin/env bash
# demo.sh: the stack command. Installs the Debian packages (as root), builds
# sagad, sagactl and the Kafka dev broker into build/, starts the local stack
# (PostgreSQL, RabbitMQ, Kafka dev broker) and prints where each service
# listens and how to stop it. Running it again reuses what already runs.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

if [[ $(id -u) == 0 ]]; then
    bash "$HERE/install-deps.sh"
else
    echo "[demo] not root: skipping package installation (deploy/local/install-deps.sh)"
fi
cmake -S "$REPO" -B "$REPO/build" -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$REPO/build" -j"${SAGA_JOBS:-$(nproc)}"
bash "$HERE/start.sh"
echo
echo "Programs: $REPO/build/orchestrator/sagad, $REPO/build/orchestrator/sagactl"
