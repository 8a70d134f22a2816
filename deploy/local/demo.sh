#!/usr/bin/env bash
# demo.sh: the first command. From a fresh clone: installs the Debian
# packages (as root), builds sagad, sagactl, the Kafka dev broker and the
# participant into build/, starts the local stack (PostgreSQL, RabbitMQ,
# Kafka dev broker), migrates, starts sagad with the example sagas (both
# brokers) and a participant that answers every example's commands, then
# starts a few hundred sagas through Kafka (kcat) and RabbitMQ (participant
# send), some of them set up to fail at different steps, waits until all
# have finished and prints `sagactl stats` and the history of a compensated
# saga. Everything is left running; deploy/local/stop.sh stops it all.
#
# Knobs: SAGA_DEMO_ORDERS (orders per broker that succeed, default 150),
# SAGA_DEMO_HTTP_PORT (sagad's metrics and health, default 9464 or a free
# one), SAGA_JOBS, SAGA_RUN_DIR and the port variables of common.sh.
# Running it again restarts sagad and the participant and adds new sagas.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
say() { printf '\n[demo] %s\n' "$*"; }

if [[ $(id -u) == 0 ]]; then
    bash "$HERE/install-deps.sh"
else
    echo "[demo] not root: skipping package installation (deploy/local/install-deps.sh)"
fi
cmake -S "$REPO" -B "$REPO/build" -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$REPO/build" -j"${SAGA_JOBS:-$(nproc)}"
bash "$HERE/start.sh"
source "$HERE/common.sh"      # SAGA_RUN_DIR and the demo process helpers
# shellcheck disable=SC1090
source "$ENV_FILE"

SAGAD=$REPO/build/orchestrator/sagad
SAGACTL=$REPO/build/orchestrator/sagactl
PARTICIPANT=$REPO/build/tests/tools/participant
export SAGA_MIGRATIONS_DIR=$REPO/migrations
DEMO=$DEMO_DIR
mkdir -p "$DEMO"
RUN=$(date +%H%M%S)            # saga ids of this run: demo-<run>-...
GOOD=${SAGA_DEMO_ORDERS:-150}

demo_stop   # sagad and participant of an earlier run

say "migrating the database"
"$SAGACTL" migrate

# ---- sagad -------------------------------------------------------------------
port=${SAGA_DEMO_HTTP_PORT:-9464}
if port_busy "$port"; then
    for port in $(seq 9465 9564); do port_busy "$port" || break; done
fi
jq -n --arg db "$SAGA_DATABASE_URL" --arg sagas "$REPO/sagas" --arg mig "$REPO/migrations" \
    --arg brokers "$SAGA_KAFKA_BROKERS" --arg amqp "$SAGA_AMQP_URL" --arg listen "127.0.0.1:$port" '{
      database_url: $db, sagas_dir: $sagas, migrations_dir: $mig,
      kafka: { brokers: $brokers, group_id: "sagad",
               properties: { "session.timeout.ms": "6000", "fetch.wait.max.ms": "20" } },
      amqp: { url: $amqp, prefetch: 256 },
      inputs: ["kafka:saga.commands", "kafka:saga.replies", "amqp:/saga.commands", "amqp:/saga.replies"],
      reply_to: { kafka: "kafka:saga.replies", amqp: "amqp:/saga.replies" },
      events: "kafka:saga.events",
      http: { listen: $listen },
      log: { format: "text", level: "info" }
    }' >"$DEMO/sagad.json"
say "starting sagad (config $DEMO/sagad.json, log $DEMO/sagad.log)"
setsid "$SAGAD" --config "$DEMO/sagad.json" </dev/null >"$DEMO/sagad.log" 2>&1 &
echo $! >"$DEMO/sagad.pid"
for i in $(seq 300); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz") == 200 ]] && break
    kill -0 "$(cat "$DEMO/sagad.pid")" 2>/dev/null || { tail -n 20 "$DEMO/sagad.log"; die "sagad exited"; }
    sleep 0.1
done

# ---- the participant -----------------------------------------------------------
# Its effects go to a database of its own, not into sagad's.
db_demo=${SAGA_DATABASE_URL%/*}/demo_participant
psql "$SAGA_DATABASE_URL" -XAtqc "SELECT 1 FROM pg_database WHERE datname = 'demo_participant'" | grep -q 1 ||
    psql "$SAGA_DATABASE_URL" -XAtqc "CREATE DATABASE demo_participant"
args=()
for ch in $(jq -r '.. | objects | .channel? // empty' "$REPO"/sagas/*.json | sort -u); do
    case $ch in
    kafka:*) args+=(--kafka-topic "${ch#kafka:}") ;;
    amqp:/*) args+=(--amqp-queue "${ch#amqp:/}") ;;
    amqp:*) ch=${ch#amqp:}; args+=(--amqp-bind "${ch%%/*}:${ch#*/}:${ch%%/*}.${ch#*/}") ;;
    esac
done
# Who fails where (the rest succeeds):
#   out of stock      inventory.reserve refused         -> compensated, nothing to undo
#   credit refused    credit.check refused              -> stock released
#   card declined     payment.charge refused            -> stock released
#   flaky bank        payment.charge fails twice, then succeeds (retried)
#   undeliverable     shipping.ship (the pivot) refused -> card refunded, then stock released
#   no car            travel.car.rent refused           -> hotel and flight cancelled
rules=(
    --rule 'inventory.reserve:fail:when=$.items[0].sku=OUT-OF-STOCK,code=out_of_stock,message=no stock left'
    --rule 'credit.check:fail:when=$.customer=c-blocked,code=credit_refused'
    --rule 'payment.charge:fail:when=$.amount>1000,code=card_declined,message=amount over the card limit'
    --rule 'payment.charge:retry:attempts=1-2,when=$.amount=999,code=bank_busy'
    --rule 'shipping.ship:fail:when=$.order_id=o-undeliverable,code=no_route'
    --rule 'travel.car.rent:fail:when=$.pick_up_at=Nowhere,code=no_car'
)
rm -f "$DEMO/participant.ready"
say "starting the participant (log $DEMO/participant.log, effects in database demo_participant)"
setsid "$PARTICIPANT" --db "$db_demo" --group-id participant "${args[@]}" "${rules[@]}" \
    --ready-file "$DEMO/participant.ready" </dev/null >"$DEMO/participant.log" 2>&1 &
echo $! >"$DEMO/participant.pid"
for i in $(seq 400); do
    [[ -s $DEMO/participant.ready ]] && break
    kill -0 "$(cat "$DEMO/participant.pid")" 2>/dev/null || { tail -n 20 "$DEMO/participant.log"; die "participant exited"; }
    sleep 0.1
done
[[ -s $DEMO/participant.ready ]] || die "participant not ready, see $DEMO/participant.log"

# ---- the sagas -------------------------------------------------------------------
order() { # order SAGA_ID ORDER_ID CUSTOMER AMOUNT SKU
    printf '{"specversion":"1.0","id":"%s","source":"urn:demo","type":"saga.start","sagatype":"order_fulfillment","sagaid":"%s","time":"%s","data":{"order_id":"%s","customer_id":"%s","amount":%s,"items":[{"sku":"%s","qty":1}]}}\n' \
        "$1" "$1" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$2" "$3" "$4" "$5"
}
trip() { # trip SAGA_ID CITY
    printf '{"specversion":"1.0","id":"%s","source":"urn:demo","type":"saga.start","sagatype":"travel_booking","sagaid":"%s","data":{"traveller":{"name":"Ada","email":"ada@example.com"},"from":"CDG","to":"%s","depart_on":"2025-06-01","return_on":"2025-06-08","card_token":"tok"}}\n' \
        "$1" "$1" "$2"
}
greeting() { # greeting SAGA_ID NAME
    printf '{"specversion":"1.0","id":"%s","source":"urn:demo","type":"saga.start","sagatype":"greeting","sagaid":"%s","data":{"name":"%s"}}\n' "$1" "$1" "$2"
}
# starts VIA: the messages of one broker
starts() {
    local via=$1 p=demo-$RUN-$1 i
    for ((i = 1; i <= GOOD; i++)); do order "$p-order-$i" "o-$via-$i" "c-$i" $((10 + i % 500)) SKU-1; done
    for ((i = 1; i <= 10; i++)); do
        order "$p-out-of-stock-$i" "o-$via-s$i" "c-$i" 20 OUT-OF-STOCK
        order "$p-credit-refused-$i" "o-$via-c$i" c-blocked 30 SKU-1
        order "$p-card-declined-$i" "o-$via-d$i" "c-$i" 5000 SKU-1
        order "$p-flaky-bank-$i" "o-$via-f$i" "c-$i" 999 SKU-1
        order "$p-undeliverable-$i" o-undeliverable "c-$i" 40 SKU-1
        trip "$p-trip-$i" LIS
        greeting "$p-greeting-$i" "Friend $i"
    done
    for ((i = 1; i <= 3; i++)); do trip "$p-no-car-$i" Nowhere; done
}
starts kafka >"$DEMO/starts-kafka.jsonl"
starts amqp >"$DEMO/starts-amqp.jsonl"
TOTAL=$(cat "$DEMO"/starts-*.jsonl | wc -l)
say "starting $TOTAL sagas: $(wc -l <"$DEMO/starts-kafka.jsonl") with kcat to kafka:saga.commands, $(wc -l <"$DEMO/starts-amqp.jsonl") with participant send to amqp:/saga.commands"
# kcat: key = saga id (after the '|'), CloudEvents content type header
jq -r '.sagaid + "|" + (. | tojson)' "$DEMO/starts-kafka.jsonl" |
    kcat -b "$SAGA_KAFKA_BROKERS" -P -t saga.commands -K'|' -H "content-type=application/cloudevents+json"
"$PARTICIPANT" send --to amqp:/saga.commands --lines "$DEMO/starts-amqp.jsonl"

t0=$(date +%s)
while :; do
    read -r done_n open_n < <(psql "$SAGA_DATABASE_URL" -XAtF' ' -c \
        "SELECT count(*) FILTER (WHERE status IN ('completed','compensated','failed')), count(*) FILTER (WHERE status IN ('running','compensating')) FROM sagas WHERE id LIKE 'demo-$RUN-%'")
    printf '[demo] %3ss: %s of %s sagas finished, %s running\n' $(($(date +%s) - t0)) "$done_n" "$TOTAL" "$open_n"
    ((done_n == TOTAL)) && break
    (($(date +%s) - t0 > 600)) && die "not all sagas finished within 10 minutes, see $DEMO/sagad.log"
    sleep 3
done

say "sagactl stats"
"$SAGACTL" stats
say "this run's sagas by scenario and status"
psql "$SAGA_DATABASE_URL" -XqP footer=off -c "
    SELECT regexp_replace(id, '^demo-[0-9]+-[a-z]+-(.*)-[0-9]+$', '\1') AS scenario, type, status, count(*)
    FROM sagas WHERE id LIKE 'demo-$RUN-%' GROUP BY 1, 2, 3 ORDER BY 1, 3"
say "sagactl show demo-$RUN-kafka-undeliverable-1 (refused at the pivot: refund, then release)"
"$SAGACTL" show "demo-$RUN-kafka-undeliverable-1"

cat <<INFO

[demo] still running:
  sagad        pid $(cat "$DEMO/sagad.pid"), http://127.0.0.1:$port/metrics, log $DEMO/sagad.log
  participant  pid $(cat "$DEMO/participant.pid"), log $DEMO/participant.log
  environment  source $ENV_FILE   (then: $SAGACTL list --status compensated)
  more sagas   $PARTICIPANT send --to amqp:/saga.commands --count 10 --sagatype greeting --data '{"name":"you"}'
  stop all     SAGA_RUN_DIR=$SAGA_RUN_DIR $HERE/stop.sh
INFO
