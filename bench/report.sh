#!/usr/bin/env bash
# report.sh OUT: turns the files of one benchmark (OUT/settings.json,
# OUT/pgbench.json, OUT/runs/*/run.json) into OUT/results.json,
# OUT/results.txt and OUT/workers.png. run.sh calls it; it can be run again
# on an old results folder.
set -euo pipefail
OUT=${1:?usage: report.sh RESULTS-DIR}

jq -n --slurpfile settings "$OUT/settings.json" --slurpfile pg "$OUT/pgbench.json" \
    --slurpfile runs <(cat "$OUT"/runs/*/run.json) '
  def r2: if . == null then null else (. * 100 | round) / 100 end;
  def pick($name): [$runs[] | select(.name == $name)][0];
  def lat: {p50_ms: (.p50_ms | r2), p99_ms: (.p99_ms | r2), max_ms: (.max_ms | r2)};
  ($pg[0].tps_4_clients) as $ceiling
  | {
      settings: $settings[0],
      pgbench: $pg[0],
      transports: ([$runs[].transport] | unique | map(. as $t | {key: $t, value: (
        ([$runs[] | select(.transport == $t and (.name | test("-w[0-9]+$")))] | sort_by(.workers)[0]) as $sat | pick("\($t)-half") as $half | {
          saturation: ($sat | {
            sagas: .sagas, seconds: (.seconds | r2), sagas_per_s: (.sagas_per_s | r2),
            transitions_per_s: (.transitions_per_s | r2),
            step_latency_ms: (.step_latency_ms | lat),
            sagad_peak_rss_mb: (.sagad_peak_rss_kb / 1024 | r2),
            sagad_cpu_s_per_1000_transitions: (.sagad_cpu_s_per_1000_transitions | r2),
            postgres_cpu_s_per_1000_transitions: (.postgres_cpu_s_per_1000_transitions | r2),
            broker_cpu_s_per_1000_transitions: (.broker_cpu_s_per_1000_transitions | r2),
            machine_cpu_s_per_1000_transitions: (.machine_cpu_s_per_1000_transitions | r2),
            machine_cores_busy: (if .machine_cpu_s_per_1000_transitions == null then null
                else .machine_cpu_s_per_1000_transitions * .transitions_per_s / 1000 | r2 end),
            db_commits_per_transition: (.db_commits_per_transition | r2),
            ratio_to_pgbench_4_clients: (.transitions_per_s / $ceiling | r2),
            pgbench_4_clients_just_before: (.pgbench_4_clients_just_before | r2),
            ratio_to_pgbench_just_before: (.ratio_to_pgbench_just_before | r2),
            db_rows_per_transition: .db_rows_per_transition,
            ok: .ok}),
          half: (if $half == null then null else ($half | {
            rate_sagas_per_s: (.driver.rate | r2), sagas: .sagas,
            transitions_per_s: (.transitions_per_s | r2),
            step_latency_ms: (.step_latency_ms | lat),
            sagad_reply_to_command_ms: .sagad_reply_to_command_ms,
            db_commits_per_transition: (.db_commits_per_transition | r2), ok: .ok}) end),
          workers: [$runs[] | select(.transport == $t and (.name | test("-w[0-9]+$")))
                    | {workers, sagas_per_s: (.sagas_per_s | r2),
                       transitions_per_s: (.transitions_per_s | r2),
                       p99_ms: (.step_latency_ms.p99_ms | r2),
                       ratio_to_pgbench_4_clients: (.transitions_per_s / $ceiling | r2),
                       ratio_to_pgbench_just_before: (.ratio_to_pgbench_just_before | r2),
                       sagad_cpu_s_per_1000_transitions: (.sagad_cpu_s_per_1000_transitions | r2),
                       db_commits_per_transition: (.db_commits_per_transition | r2), ok}]
                   | sort_by(.workers)
        })}) | from_entries)
    }
  | .targets = (.transports.kafka as $k | if $k == null then null else {
      kafka_transitions_at_least_pgbench_4_clients:
        {value: ($k.saturation.ratio_to_pgbench_just_before // $k.saturation.ratio_to_pgbench_4_clients),
         target: 1.0,
         met: (($k.saturation.ratio_to_pgbench_just_before // $k.saturation.ratio_to_pgbench_4_clients) >= 1.0)},
      p99_step_latency_at_half_under_25_ms:
        {value: $k.half.step_latency_ms.p99_ms, target: 25,
         met: ($k.half != null and $k.half.step_latency_ms.p99_ms < 25)},
      p99_reply_to_command_in_sagad_at_half_under_25_ms:
        {value: $k.half.sagad_reply_to_command_ms.p99_ms, target: 25,
         met: ($k.half.sagad_reply_to_command_ms != null and $k.half.sagad_reply_to_command_ms.p99_ms < 25)}
    } end)
' >"$OUT/results.json"

# The table.
jq -r '.pgbench | "pgbench ceiling (\(.seconds_each) s each): \(.tps_1_client | floor) tps with 1 client; with 4 clients \(.tps_4_clients_before | floor) before and \(.tps_4_clients_after // 0 | floor) after the sagad runs, mean \(.tps_4_clients | floor)\npostgres CPU per 1,000 pgbench transactions (4 clients): \(.postgres_cpu_s_per_1000_tx_4_clients * 100 | round / 100) s\n"' \
    "$OUT/results.json" >"$OUT/results.txt"
jq -r '
  def f: if . == null then "-" else tostring end;
  (["transport", "sagas/s", "trans/s", "x pgbench4", "x pg4 now", "p50 ms", "p99 ms", "max ms", "half p50", "half p99", "half max", "in sagad p50", "in sagad p99", "RSS MB", "CPU s/1k", "PG CPU s/1k", "broker CPU s/1k", "all CPU s/1k", "cores busy", "commits/tr"] | @tsv),
  (.transports | to_entries[] | .key as $t | .value as $v | [$t,
     ($v.saturation.sagas_per_s | f), ($v.saturation.transitions_per_s | f),
     ($v.saturation.ratio_to_pgbench_4_clients | f), ($v.saturation.ratio_to_pgbench_just_before | f),
     ($v.saturation.step_latency_ms.p50_ms | f), ($v.saturation.step_latency_ms.p99_ms | f),
     ($v.saturation.step_latency_ms.max_ms | f),
     ($v.half.step_latency_ms.p50_ms | f), ($v.half.step_latency_ms.p99_ms | f),
     ($v.half.step_latency_ms.max_ms | f),
     ($v.half.sagad_reply_to_command_ms.p50_ms | f), ($v.half.sagad_reply_to_command_ms.p99_ms | f),
     ($v.saturation.sagad_peak_rss_mb | f), ($v.saturation.sagad_cpu_s_per_1000_transitions | f),
     ($v.saturation.postgres_cpu_s_per_1000_transitions | f),
     ($v.saturation.broker_cpu_s_per_1000_transitions | f),
     ($v.saturation.machine_cpu_s_per_1000_transitions | f), ($v.saturation.machine_cores_busy | f),
     ($v.saturation.db_commits_per_transition | f)] | @tsv),
  "-",
  (["transport", "workers", "sagas/s", "trans/s", "x pgbench4", "x pg4 now", "p99 ms", "CPU s/1k", "commits/tr"] | @tsv),
  (.transports | to_entries[] | .key as $t | .value.workers[] |
     [$t, .workers, .sagas_per_s, .transitions_per_s, .ratio_to_pgbench_4_clients,
      .ratio_to_pgbench_just_before, .p99_ms,
      .sagad_cpu_s_per_1000_transitions, .db_commits_per_transition] | map(f) | @tsv)
' "$OUT/results.json" | column -t -s $'\t' | sed 's/^- *$//' >>"$OUT/results.txt"

# The plot: throughput and p99 against the number of sagad processes.
jq -r '.transports | to_entries[] | .key as $t | .value.workers[] |
       [$t, .workers, .transitions_per_s, .p99_ms] | @tsv' "$OUT/results.json" >"$OUT/workers.tsv"
if command -v gnuplot >/dev/null; then
    plots_t="" plots_l=""
    for t in $(cut -f1 "$OUT/workers.tsv" | sort -u); do
        grep "^$t"$'\t' "$OUT/workers.tsv" >"$OUT/workers-$t.tsv"
        plots_t+="${plots_t:+, }'$OUT/workers-$t.tsv' using 2:3 with linespoints lw 2 title '$t'"
        plots_l+="${plots_l:+, }'$OUT/workers-$t.tsv' using 2:4 with linespoints lw 2 title '$t'"
    done
    ceiling=$(jq '.pgbench.tps_4_clients' "$OUT/results.json")
    ymax=$(jq '[.pgbench.tps_4_clients, (.transports[].workers[].transitions_per_s)] | max * 1.15 | ceil' \
        "$OUT/results.json")
    gnuplot <<GP
set terminal pngcairo size 1000,420 font ",10"
set output '$OUT/workers.png'
set multiplot layout 1,2 title "sagad: 3-step sagas, participant answering at once"
set xlabel "sagad processes"
set xtics (1, 2, 4)
set xrange [0.5:4.5]
set yrange [0:*]
set grid
set key bottom right
set ylabel "transitions/s"
set yrange [0:$ymax]
set title "throughput (pgbench 4-client ceiling dashed)"
plot $plots_t, $ceiling with lines dt 2 lc rgb "gray" title "pgbench 4 clients"
set ylabel "p99 step latency (ms)"
set yrange [0:*]
set title "p99 step latency at saturation"
set key top left
plot $plots_l
unset multiplot
GP
fi
cat "$OUT/results.txt"
