#!/usr/bin/env bash
# report.sh RESULTS OUT_DIR: what run.sh makes of one run's figures. RESULTS holds the JSON lines
# the benchmarks printed (those with a "case" are kept). Prints each Tether figure next to
# nchan's and the raw store's (XADD) with the two ratios, writes OUT_DIR/latest.json (every case,
# every comparison, the commit and the machine) and, with gnuplot, OUT_DIR/throughput.png,
# OUT_DIR/latency.png and OUT_DIR/ratios.png. Exit: 0 ok, 100 usage, 111 a failure.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/../.." && pwd -P)
[[ $# -eq 2 ]] || {
  echo "usage: report.sh RESULTS OUT_DIR" >&2
  exit 100
}
RESULTS=$1 OUT=$2
mkdir -p "$OUT"
W=$(mktemp -d /tmp/tether-bench-report.XXXXXX)
trap 'rm -rf "$W"' EXIT

# A comparison: a label, the Tether case and field, nchan's, the raw store's. Throughput ratios
# below 1 and latency ratios above 1 are Tether's shortfall.
COMPARISONS='[
 ["appends/s, one stream, .out", "throughput", "appends_per_s", "tether_append_one_stream", "nchan_publish_one_channel", "redis_xadd_one_stream", "xadd_per_s"],
 ["appends/s, 64 streams, .out", "throughput", "appends_per_s", "tether_append_64_streams", "nchan_publish_64_channels", "redis_xadd_64_streams", "xadd_per_s"],
 ["appends/s, one stream, .in", "throughput", "appends_per_s", "tether_append_in_one_stream", "nchan_publish_one_channel", "redis_xadd_one_stream", "xadd_per_s"],
 ["appends/s, 64 streams, .out, 1 node of a cluster (netns)", "throughput", "appends_per_s", "cluster_appends_1_nodes", "nchan_publish_64_channels", "cluster_redis_xadd_64_streams", "xadd_per_s"],
 ["appends/s, 64 streams, .out, 2 nodes", "throughput", "appends_per_s", "cluster_appends_2_nodes", "nchan_publish_64_channels", "cluster_redis_xadd_64_streams", "xadd_per_s"],
 ["appends/s, 64 streams, .out, 3 nodes", "throughput", "appends_per_s", "cluster_appends_3_nodes", "nchan_publish_64_channels", "cluster_redis_xadd_64_streams", "xadd_per_s"],
 ["chunks/s, the SDK streaming writer (s2s), one stream, .out", "throughput", "appends_per_s", "s2s_writer_1", "nchan_publish_one_channel", "redis_xadd_one_stream", "xadd_per_s"],
 ["chunks/s, the SDK streaming writer (s2s), 8 streams, .out", "throughput", "appends_per_s", "s2s_writer_8", "nchan_publish_64_channels", "redis_xadd_64_streams", "xadd_per_s"],
 ["latency p50 ms, 1 stream x 1000 subscribers", "latency", "p50_ms", "sse_fanout_1x1000", "nchan_fanout_1x1000", "redis_xadd_latency_one_stream", "p50_ms"],
 ["latency p99 ms, 1 stream x 1000 subscribers", "latency", "p99_ms", "sse_fanout_1x1000", "nchan_fanout_1x1000", "redis_xadd_latency_one_stream", "p99_ms"],
 ["latency p99.9 ms, 1 stream x 1000 subscribers", "latency", "p999_ms", "sse_fanout_1x1000", "nchan_fanout_1x1000", "redis_xadd_latency_one_stream", "p999_ms"],
 ["latency p50 ms, 1000 streams x 1 subscriber", "latency", "p50_ms", "sse_streams_1000x1", "nchan_streams_1000x1", "redis_xadd_latency_1000_streams", "p50_ms"],
 ["latency p99 ms, 1000 streams x 1 subscriber", "latency", "p99_ms", "sse_streams_1000x1", "nchan_streams_1000x1", "redis_xadd_latency_1000_streams", "p99_ms"],
 ["latency p99.9 ms, 1000 streams x 1 subscriber", "latency", "p999_ms", "sse_streams_1000x1", "nchan_streams_1000x1", "redis_xadd_latency_1000_streams", "p999_ms"]
]'
# Tether figures with no nchan or XADD counterpart (the bus hop's, against bare nng; the
# clickhouse-replicator's, from replication.sh): a label, the case, the field, the goal (null: none), the case's field that
# says at what load.
FIGURES='[
 ["bus hop p50 us (one bus.echo call round trip, 64 B)", "bus_hop", "p50_us", 50, "none"],
 ["bare nng REQ/REP round trip p50 us (what a bus hop rides on)", "bus_hop", "raw_nng_p50_us", null, "none"],
 ["socketpair round trip p50 us (the machine waking a process and back)", "bus_hop", "socketpair_p50_us", null, "none"],
 ["SDK streaming writer chunk -> subscriber p50 ms", "s2s_chunk_to_subscriber_100hz", "p50_ms", null, "rate_per_s"],
 ["SDK streaming writer chunk -> subscriber p99 ms", "s2s_chunk_to_subscriber_100hz", "p99_ms", null, "rate_per_s"],
 ["commit -> visible in ClickHouse p50 ms", "commit_to_clickhouse", "p50_ms", null, "commits_per_s"],
 ["commit -> visible in ClickHouse p99 ms", "commit_to_clickhouse", "p99_ms", 500, "commits_per_s"],
 ["GET /api/v1/sessions first page p50 ms", "list_first_page", "p50_ms", null, "sessions"],
 ["GET /api/v1/sessions first page p99 ms", "list_first_page", "p99_ms", null, "sessions"],
 ["GET /api/v1/sessions filtered p50 ms", "list_filtered", "p50_ms", null, "sessions"],
 ["GET /api/v1/sessions filtered p99 ms", "list_filtered", "p99_ms", null, "sessions"],
 ["GET /api/v1/sessions from a mid cursor p50 ms", "list_mid_cursor", "p50_ms", null, "sessions"],
 ["GET /api/v1/sessions from a mid cursor p99 ms", "list_mid_cursor", "p99_ms", null, "sessions"]
]'
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=false
[[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]] && dirty=true
grep -E '^\{.*"case"' "$RESULTS" | jq -s \
  --argjson comparisons "$COMPARISONS" --argjson figures "$FIGURES" --arg commit "$commit" --argjson dirty "$dirty" \
  --arg at "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg kernel "$(uname -r)" \
  --argjson cpus "$(nproc)" --arg cpu "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
  --arg load0 "${TETHER_BENCH_LOAD_AT_START:-}" --arg load1 "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --argjson seconds "${TETHER_BENCH_SECONDS:-5}" --argjson elapsed "${TETHER_BENCH_ELAPSED:-null}" '
  (map({key: .case, value: .}) | from_entries) as $c
  | def ratio(a; b): if a == null or b == null or b == 0 then null
                     else (a / b * 1000 | round) / 1000 end;
  {generated_at: $at, commit: $commit, working_tree_dirty: $dirty,
   machine: {cpus: $cpus, cpu: $cpu, kernel: $kernel,
             loadavg_at_start: (if $load0 == "" then null else $load0 end), loadavg_at_end: $load1},
   seconds_each: $seconds, run_seconds: $elapsed,
   note: "one run on a shared, noisy machine: the load tools run on the same cores as the servers",
   comparisons: [$comparisons[] | . as [$lab, $kind, $tf, $tc, $nc, $xc, $xf]
     | {"label": $lab, kind: $kind,
        tether_case: $tc, nchan_case: $nc, raw_case: $xc,
        tether: $c[$tc][$tf], nchan: $c[$nc][$tf], raw_xadd: $c[$xc][$xf]}
     | . + {tether_over_xadd: ratio(.tether; .raw_xadd), tether_over_nchan: ratio(.tether; .nchan)}],
   figures: [$figures[] | . as [$lab, $tc, $tf, $goal, $at]
     | {"label": $lab, tether_case: $tc, tether: $c[$tc][$tf], goal: $goal,
        at: (if $c[$tc][$at] == null then null else "\($c[$tc][$at]) \($at | sub("_per_s"; "/s"))" end)}],
   cases: $c}' >"$W/latest.json"
mv "$W/latest.json" "$OUT/latest.json"

jq -r '.comparisons[] | "\(.label): Tether \(.tether), nchan \(.nchan), raw XADD \(.raw_xadd), Tether/XADD \(.tether_over_xadd), Tether/nchan \(.tether_over_nchan)"' "$OUT/latest.json"
jq -r '.figures[] | "\(.label): Tether \(.tether)\(if .at then " at \(.at)" else "" end)\(if .goal then " (goal <= \(.goal))" else "" end)"' "$OUT/latest.json"

if ! command -v gnuplot >/dev/null; then
  echo "report.sh: no gnuplot (compose/deps.sh installs gnuplot-nox): no plots" >&2
  exit 0
fi
# one data file a plot: label, Tether, nchan, raw XADD (a missing figure is "-", not plotted)
jq -r '.comparisons[] | select(.kind == "throughput")
  | [(.label | sub("appends/s, "; "")), (.tether // "-"), (.nchan // "-"), (.raw_xadd // "-")] | @tsv' \
  "$OUT/latest.json" >"$W/throughput.dat"
latency_dat() { # latency_dat CASE-LABEL FILE
  jq -r --arg k "$1" '.comparisons[] | select(.kind == "latency" and (.label | endswith($k)))
    | [(.label | capture("(?<p>p[0-9.]+)").p), (.tether // "-"), (.nchan // "-"), (.raw_xadd // "-")] | @tsv' \
    "$OUT/latest.json" >"$2"
}
latency_dat "1 stream x 1000 subscribers" "$W/fanout.dat"
latency_dat "1000 streams x 1 subscriber" "$W/streams.dat"
jq -r '.comparisons[] | [(.label | sub("latency "; "") | sub("appends/s, "; "appends ") | sub(" subscribers?"; "")),
  (.tether_over_nchan // "-"), (.tether_over_xadd // "-")] | @tsv' "$OUT/latest.json" >"$W/ratios.dat"
title="Tether $commit$($dirty && echo '+' || true), $(date -u +%Y-%m-%d), $(nproc) cores, one noisy run"
gnuplot <<GP
set terminal pngcairo size 900,520 font "sans,10"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key below horizontal
set datafile missing "-"
set datafile separator "\t"
set logscale y
set output "$W/throughput.png"
set title "Appends per second, 64 connections, 1 KiB (log scale)\n$title"
set ylabel "appends/s"
set yrange [100:*]
plot "$W/throughput.dat" using 2:xtic(1) title "Tether" lc rgb "#1f77b4", \
     "" using 3 title "nchan (Redis, distributed)" lc rgb "#2ca02c", \
     "" using 4 title "raw XADD (redis-benchmark)" lc rgb "#7f7f7f"
set output "$W/latency.png"
set size 1,1
set multiplot layout 1,2 title "Append-to-subscriber latency, ms (log scale); raw XADD: one write's round trip\n$title"
set ylabel "ms"
set yrange [*:*]
set title "1 stream x 1000 subscribers"
plot "$W/fanout.dat" using 2:xtic(1) title "Tether" lc rgb "#1f77b4", \
     "" using 3 title "nchan" lc rgb "#2ca02c", \
     "" using 4 title "raw XADD" lc rgb "#7f7f7f"
set title "1000 streams x 1 subscriber"
plot "$W/streams.dat" using 2:xtic(1) title "Tether" lc rgb "#1f77b4", \
     "" using 3 title "nchan" lc rgb "#2ca02c", \
     "" using 4 title "raw XADD" lc rgb "#7f7f7f"
unset multiplot
set terminal pngcairo size 1000,560 font "sans,10"
set output "$W/ratios.png"
set title "Tether's figure over nchan's and over raw XADD's (log scale; 1 = equal)\nthroughput: below 1 is slower; latency: above 1 is slower\n$title"
set ylabel "ratio"
set xtics rotate by 30 right
set key inside top left vertical
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "black"
set bmargin 7
plot "$W/ratios.dat" using 2:xtic(1) title "Tether / nchan" lc rgb "#2ca02c", \
     "" using 3 title "Tether / raw XADD" lc rgb "#7f7f7f"
GP
mv "$W/throughput.png" "$W/latency.png" "$W/ratios.png" "$OUT/"
echo "report.sh: wrote $OUT/latest.json, throughput.png, latency.png, ratios.png" >&2
