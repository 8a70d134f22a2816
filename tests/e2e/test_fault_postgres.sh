#!/usr/bin/env bash
# Fault scenario 5: PostgreSQL goes away. sagad reaches the database
# through tcp-cut-proxy, which several times cuts sagad's connection right
# after forwarding a COMMIT: the transaction commits, but sagad never hears
# so and cannot know whether it did. The proxy also cuts every connection
# at once, and PostgreSQL itself is restarted with -m immediate (a crash:
# no checkpoint, recovery from WAL) while the workload runs. Once drained,
# every invariant holds: a batch of unknown outcome was neither lost nor
# applied twice.
source "$(dirname "${BASH_SOURCE[0]}")/faults/lib.sh"
fault_init fault-postgres 300

[[ -n ${SAGA_PG_RESTART_CMD:-} ]] || e2e_fail "SAGA_PG_RESTART_CMD is not set: source the stack's env file"
fault_start_proxy
e2e_start_participant participant --rules "$(fault_rules)"
e2e_start_sagad sagad "{\"database_url\": \"$FAULT_PROXY_DB\"}"
e2e_wait_kafka_group 8 sagad
fault_feed 250

# commit_cut N: arms N cuts after a COMMIT, waits until they happened.
commit_cut() {
    local before after
    before=$(fault_proxy_stat commit_cuts)
    fault_proxy "commit $1"
    for _ in $(seq 300); do
        after=$(fault_proxy_stat commit_cuts)
        ((after >= before + $1)) && break
        sleep 0.1
    done
    ((after >= before + $1)) || e2e_fail "the proxy cut $((after - before)) of $1 connections after a COMMIT within 30 s"
    fault_count pg_connection_lost_after_commit "$1"
}

fault_pause 300 1500
fault_rand 1 3; commit_cut "$FAULT_R"
fault_pause 300 1500
fault_proxy cut
fault_count pg_all_connections_cut
fault_pause 300 1500
fault_rand 1 3; commit_cut "$FAULT_R"
fault_pause 300 1500
sh -c "$SAGA_PG_RESTART_CMD immediate" >"$E2E_WORK/pg-restart.log" 2>&1 ||
    { cat "$E2E_WORK/pg-restart.log" >&2; e2e_fail "PostgreSQL restart failed"; }
fault_count pg_restart_immediate
fault_pause 500 1500
fault_rand 1 3; commit_cut "$FAULT_R"

fault_wait_feed
fault_drain "$FAULT_SAGAS" 240
fault_check
grep -q "database unavailable" "${E2E_LOG[sagad]}" ||
    e2e_fail "sagad never reported the database unavailable: the faults did not reach it"
fault_record
e2e_stop sagad
e2e_stop participant
e2e_pass
