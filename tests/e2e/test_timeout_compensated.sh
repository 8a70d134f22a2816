#!/usr/bin/env bash
# A participant that does not answer: the step times out, is sent again
# (a new attempt), times out again, and once max_attempts is used up the
# saga compensates, the timed-out step included (its outcome is unknown:
# its compensation goes out with a null where the result would be), then
# the steps before it, in reverse order. A step that times out once and
# is answered on the next attempt completes the saga.
# Uses tests/e2e/sagas/timeouts.json (2 s timeouts, 2 attempts).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init timeout tests/e2e/sagas/timeouts.json

e2e_start_participant participant \
    --rule 't.slow:silent:when=$.k=never' \
    --rule 't.slow:silent:attempts=1,when=$.k=once'
e2e_start_sagad sagad
e2e_warm_up timeouts '{"k":"warm"}'

e2e_send "$E2E_IN_KAFKA" --count 1 --sagatype timeouts --prefix never --data '{"k":"never"}'
e2e_send "$E2E_IN_AMQP" --count 1 --sagatype timeouts --prefix once --data '{"k":"once"}'
e2e_wait_finished 3 60
e2e_check_invariants

e2e_expect "never: status" "$(e2e_sql "SELECT status FROM sagas WHERE id = 'never-1'")" compensated
e2e_expect "never: attempts of the silent step" \
    "$(e2e_sql "SELECT string_agg(attempt || ':' || outcome, ' ' ORDER BY attempt) FROM participant_effects WHERE saga_id = 'never-1' AND step = 'slow' AND NOT undo")" \
    "1:none 2:none"
e2e_expect "never: timeouts fired" \
    "$(e2e_sql "SELECT count(*) FROM saga_history WHERE saga_id = 'never-1' AND event = 'input.timer' AND detail::text LIKE '%step_timeout%'")" 2
e2e_expect "never: step status" \
    "$(e2e_sql "SELECT string_agg(event, ' ' ORDER BY seq) FROM saga_history WHERE saga_id = 'never-1' AND step = 'slow' AND event IN ('step.timed_out', 'step.compensated')")" \
    "step.timed_out step.compensated"
e2e_expect "never: undone in reverse order" \
    "$(e2e_sql "SELECT string_agg(step, ' ' ORDER BY seq) FROM participant_effects WHERE saga_id = 'never-1' AND undo")" \
    "slow hold"
e2e_expect "never: undo of the timed-out step" \
    "$(e2e_sql "SELECT data::text FROM participant_effects WHERE command_id = 'never-1/slow/undo/1'")" \
    '{"k": "never", "slow_id": null}'
e2e_expect "never: hold released with its id" \
    "$(e2e_sql "SELECT data->>'hold_id' FROM participant_effects WHERE command_id = 'never-1/hold/undo/1'")" "hold-never-1"
e2e_expect "never: last step never sent" \
    "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE saga_id = 'never-1' AND step = 'last'")" 0

e2e_expect "warm-up: status" "$(e2e_sql "SELECT status FROM sagas WHERE id = 'warmup'")" completed
e2e_expect "once: status" "$(e2e_sql "SELECT status FROM sagas WHERE id = 'once-1'")" completed
e2e_expect "once: attempts" \
    "$(e2e_sql "SELECT string_agg(attempt || ':' || outcome, ' ' ORDER BY attempt) FROM participant_effects WHERE saga_id = 'once-1' AND step = 'slow'")" \
    "1:none 2:success"

e2e_figures
e2e_pass
