#!/usr/bin/env bash
# scripts/loadbench.sh: what amocrm_auth costs under load, against plain
# reverse_proxy, on this machine (everything on 127.0.0.1).
#
#   scripts/loadbench.sh [compare|scale|all]     (default: compare)
#
# compare: one local upstream (scripts/loadbench/upstream: 200 + a small JSON)
#   and two Caddys built by scripts/build.sh:
#     (a) amocrm_auth (rate_limit 0, an encrypted Badger store holding the
#         user's token, seeded through tokenstore) + reverse_proxy to the upstream;
#     (b) reverse_proxy to the same upstream with header_up Authorization "Bearer static".
#   A first request warms (a) up; then wrk runs against (a) with the user's
#   legacy credentials in the query and against (b) with a plain URL, with the
#   same settings, alternating for ROUNDS rounds: first at saturation
#   (-tTHREADS -cCONNS), then at light load (-t1 -cLIGHT_CONNS), where latency
#   is not queueing. It prints each run, the medians, and the medians of each
#   round's ratio and latency added (medians: a shared machine's background
#   load comes in bursts), and the CPU time Caddy spent per request in each,
#   which depends little on the background load. Targets: (a)/(b) throughput
#   >= 0.95, p99 added < 1 ms.
# scale: seeds SCALE_USERS users (default 100,000) into an encrypted store,
#   starts Caddy (a) on it and reports, with scripts/loadbench/loadgen: the
#   time to listening and to the first answer, RSS (anon, and file: the
#   store's memory-mapped tables), one user's latency (every request a cache
#   hit), a first request for every user (cold: read from Badger), random
#   users afterwards (warm: cached, or read again if the bounded cache evicted
#   them), a restart on the full store, and a summary against issue 12's
#   targets. SCALE_USERS=1000000 takes 9-10 minutes on the 2-core machine
#   of docs/performance.md (4.5-5 of them seeding amoCRM-sized tokens).
#
# Environment: DURATION (10s), THREADS (2), CONNS (32), LIGHT_CONNS (4), ROUNDS (5), SCALE_USERS
# (100000), SCALE_CONNS (16), SEED_WORKERS (512), KEEP=1 keeps the work directory (logs, configs),
# TABLE_MEMORY=SIZE (e.g. 256MiB) bounds the store's resident table pages (the store option
# table_memory; the seeding too, so the store starts out of the page cache as after a reboot),
# PROFILE=DIR saves Caddy's heap profiles (start, after the cold pass, after the warm run) and a
# CPU profile of the warm run into DIR (go tool pprof DIR/cpu-warm.pb.gz).
# wrk comes from Debian's packages; it is installed with apt-get if missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-compare}"
DURATION="${DURATION:-10s}"
THREADS="${THREADS:-2}"
CONNS="${CONNS:-32}"
LIGHT_CONNS="${LIGHT_CONNS:-4}"
ROUNDS="${ROUNDS:-5}"
SCALE_USERS="${SCALE_USERS:-100000}"
SCALE_CONNS="${SCALE_CONNS:-16}"
CADDY="$ROOT/bin/caddy"

log() { printf 'loadbench: %s\n' "$*" >&2; }
die() { printf 'loadbench: error: %s\n' "$*" >&2; exit 1; }

case "$MODE" in compare | scale | all) ;; *) die "usage: $0 [compare|scale|all]" ;; esac
export PATH="/usr/local/go/bin:$PATH"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/amobridge-loadbench.XXXXXX")"
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if [[ "${KEEP:-0}" == 1 ]]; then
		log "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

# --- tools -------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
	log "installing wrk from Debian's packages"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
command -v wrk >/dev/null 2>&1 || die "wrk is not installed"

log "building bin/caddy (scripts/build.sh) and the helpers"
bash "$ROOT/scripts/build.sh"
mkdir -p "$WORK/bin"
(cd "$ROOT" && go build -o "$WORK/bin/" ./scripts/loadbench/upstream ./scripts/loadbench/seed ./scripts/loadbench/loadgen)

# --- helpers -----------------------------------------------------------------
# free_port prints a TCP port on 127.0.0.1 that nothing listens on and that
# this script has not handed out before (a file, as it runs in subshells).
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 12000)) # below the ephemeral range (32768-)
		grep -qx "$p" "$WORK/ports" 2>/dev/null && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p" >>"$WORK/ports"
			printf '%s' "$p"
			return
		fi
	done
	die "no free port found"
}

# wait_port PORT PID NAME: waits until 127.0.0.1:PORT accepts connections.
wait_port() {
	local i
	for i in $(seq 1 600); do
		if ! kill -0 "$2" 2>/dev/null; then
			tail -n 5 "$WORK/$3.log" >&2 || true
			die "$3 exited while starting"
		fi
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return
		fi
		sleep 0.05
	done
	die "$3 did not listen on 127.0.0.1:$1 in 30 s"
}

now_ms() { date +%s%3N; }

rss_mb() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

STORE_KEY="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
CLIENT_SECRET="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"

# caddyfile_amocrm NAME ADMIN_PORT HTTP_PORT STORE_DIR: config (a).
caddyfile_amocrm() {
	cat <<EOF
{
	admin 127.0.0.1:$2
	default_bind 127.0.0.1
	http_port $3
	auto_https off
	persist_config off
	storage file_system $WORK/$1/data
}

http://127.0.0.1:$3 {
	amocrm_auth {
		client_id 5e6f7a8b-1c2d-4e3f-9a0b-c1d2e3f4a5b6
		client_secret {env.LOADBENCH_CLIENT_SECRET}
		redirect_uri http://127.0.0.1:$3/amocrm/oauth/callback
		subdomain acme
		# No exchange happens: the users' tokens are seeded. Port 9 is discard.
		api_base http://127.0.0.1:9/{subdomain}
		rate_limit 0
		store badger {
			path $4
			encryption_key {env.LOADBENCH_STORE_KEY}
			${TABLE_MEMORY:+table_memory $TABLE_MEMORY}
		}
	}
	reverse_proxy 127.0.0.1:$UP_PORT
}
EOF
}

# caddyfile_plain NAME ADMIN_PORT HTTP_PORT: config (b).
caddyfile_plain() {
	cat <<EOF
{
	admin 127.0.0.1:$2
	default_bind 127.0.0.1
	http_port $3
	auto_https off
	persist_config off
	storage file_system $WORK/$1/data
}

http://127.0.0.1:$3 {
	reverse_proxy 127.0.0.1:$UP_PORT {
		header_up Authorization "Bearer static"
	}
}
EOF
}

# start_caddy NAME CONFIG_TEXT HTTP_PORT: starts Caddy, sets CADDY_PID,
# START_MS (when it was started) and READY_MS (from then to the site's port
# accepting connections).
start_caddy() {
	local name="$1" cfg="$WORK/$1/Caddyfile" t0
	mkdir -p "$WORK/$name/home" "$WORK/$name/data"
	printf '%s\n' "$2" >"$cfg"
	t0="$(now_ms)"
	HOME="$WORK/$name/home" XDG_DATA_HOME="$WORK/$name/home" XDG_CONFIG_HOME="$WORK/$name/home" \
		LOADBENCH_CLIENT_SECRET="$CLIENT_SECRET" LOADBENCH_STORE_KEY="$STORE_KEY" \
		"$CADDY" run --adapter caddyfile --config "$cfg" >"$WORK/$name.log" 2>&1 &
	CADDY_PID=$!
	START_MS="$t0"
	PIDS+=("$CADDY_PID")
	wait_port "$3" "$CADDY_PID" "$name"
	READY_MS=$(($(now_ms) - t0))
}

# first_ok_ms URL: polls URL until it answers 200; prints the ms since START_MS.
first_ok_ms() {
	local i
	for i in $(seq 1 1200); do
		if [[ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" == 200 ]]; then
			printf '%d' $(($(now_ms) - START_MS))
			return
		fi
		sleep 0.025
	done
	die "no 200 from $1 within 30 s"
}

# to_ms VALUE: wrk's 1.23us / 4.56ms / 1.2s in milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		n = v + 0
		if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
		printf "%.3f", n
	}'
}

# cpu_ticks PID: the process's user + system CPU time, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
CLK_TCK="$(getconf CLK_TCK)"

# run_wrk NAME THREADS CONNS URL PID: runs wrk, prints "rps p50_ms p99_ms
# non2xx cpu_us", cpu_us being the CPU time Caddy (PID) spent per request:
# unlike throughput and latency, it hardly depends on what else the machine
# is doing.
run_wrk() {
	local out="$WORK/wrk-$1-$(now_ms).txt" rps p50 p99 bad c0 c1 n
	c0="$(cpu_ticks "$5")"
	wrk -t"$2" -c"$3" -d"$DURATION" --latency "$4" >"$out" 2>&1 || die "wrk failed: $(cat "$out")"
	c1="$(cpu_ticks "$5")"
	rps="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
	p50="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")"
	p99="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")"
	bad="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")"
	n="$(awk '/ requests in / { print $1 }' "$out")"
	printf '%s %s %s %s %s\n' "$rps" "$p50" "$p99" "${bad:-0}" \
		"$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')"
}

# median: the median of the numbers on stdin.
median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# compare_at THREADS CONNS: ROUNDS alternating wrk runs against (a) and (b),
# then medians, and the medians of each round's ratio and latency added (a
# round's two runs are next to each other in time, so they share the
# machine's background load).
compare_at() {
	local t="$1" c="$2" r rps p50 p99 bad cpu ra p50a p99a cpua
	local res="$WORK/compare-$c.txt"
	: >"$res"
	printf '\nwrk -t%s -c%s -d%s --latency, %s round(s), alternating:\n' "$t" "$c" "$DURATION" "$ROUNDS"
	printf '%-28s %12s %10s %10s %8s %14s\n' "run" "req/s" "p50 ms" "p99 ms" "non-2xx" "Caddy CPU/req"
	for r in $(seq 1 "$ROUNDS"); do
		read -r rps p50 p99 bad cpu <<<"$(run_wrk a "$t" "$c" "$URL_A" "$A_PID")"
		printf '%-28s %12s %10s %10s %8s %11s us\n' "round $r (a) amocrm_auth" "$rps" "$p50" "$p99" "$bad" "$cpu"
		ra="$rps" p50a="$p50" p99a="$p99" cpua="$cpu"
		read -r rps p50 p99 bad cpu <<<"$(run_wrk b "$t" "$c" "$URL_B" "$B_PID")"
		printf '%-28s %12s %10s %10s %8s %11s us\n' "round $r (b) reverse_proxy" "$rps" "$p50" "$p99" "$bad" "$cpu"
		echo "$ra $p50a $p99a $rps $p50 $p99 $cpua $cpu" >>"$res"
	done
	local mra mrb m50a m50b m99a m99b ratio add50 add99 cpub
	mra="$(awk '{ print $1 }' "$res" | median)"
	m50a="$(awk '{ print $2 }' "$res" | median)"
	m99a="$(awk '{ print $3 }' "$res" | median)"
	mrb="$(awk '{ print $4 }' "$res" | median)"
	m50b="$(awk '{ print $5 }' "$res" | median)"
	m99b="$(awk '{ print $6 }' "$res" | median)"
	ratio="$(awk '{ print $1 / $4 }' "$res" | median)"
	add50="$(awk '{ print $2 - $5 }' "$res" | median)"
	add99="$(awk '{ print $3 - $6 }' "$res" | median)"
	cpua="$(awk '{ print $7 }' "$res" | median)"
	cpub="$(awk '{ print $8 }' "$res" | median)"
	awk -v n="$ROUNDS" -v c="$c" -v ra="$mra" -v rb="$mrb" -v a50="$m50a" -v b50="$m50b" -v a99="$m99a" -v b99="$m99b" \
		-v ratio="$ratio" -v add50="$add50" -v add99="$add99" -v cpua="$cpua" -v cpub="$cpub" 'BEGIN {
		printf "medians of %d rounds at %d connections:\n", n, c
		printf "  (a) amocrm_auth + reverse_proxy : %10.0f req/s  p50 %.3f ms  p99 %.3f ms\n", ra, a50, a99
		printf "  (b) reverse_proxy only          : %10.0f req/s  p50 %.3f ms  p99 %.3f ms\n", rb, b50, b99
		printf "  throughput ratio (a)/(b)        : %.3f   (median of the rounds; target >= 0.95: %s)\n", ratio, (ratio >= 0.95 ? "met" : "MISSED")
		printf "  p50 added                       : %+.3f ms\n", add50
		printf "  p99 added                       : %+.3f ms  (median of the rounds; target < 1 ms: %s)\n", add99, (add99 < 1 ? "met" : "MISSED")
		printf "  Caddy CPU per request           : (a) %.1f us, (b) %.1f us: amocrm_auth adds %.1f us (%.1f%%)\n", cpua, cpub, cpua - cpub, (cpua - cpub) / cpub * 100
	}'
}

# --- the upstream ------------------------------------------------------------
UP_PORT="$(free_port)"
"$WORK/bin/upstream" -addr "127.0.0.1:$UP_PORT" >"$WORK/upstream.log" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")
wait_port "$UP_PORT" "$UP_PID" upstream

printf 'machine: %s cores, %s, %s, load average %s\n' "$(nproc)" \
	"$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" "$(go version | awk '{ print $3 }')" \
	"$(cut -d' ' -f1-3 /proc/loadavg)"

# --- compare -----------------------------------------------------------------
if [[ "$MODE" == compare || "$MODE" == all ]]; then
	"$WORK/bin/seed" -store "$WORK/store-compare" -users 1 -key "$STORE_KEY" >/dev/null
	A_ADMIN="$(free_port)" A_HTTP="$(free_port)"
	start_caddy caddy-a "$(caddyfile_amocrm caddy-a "$A_ADMIN" "$A_HTTP" "$WORK/store-compare")" "$A_HTTP"
	A_PID="$CADDY_PID"
	B_ADMIN="$(free_port)" B_HTTP="$(free_port)"
	start_caddy caddy-b "$(caddyfile_plain caddy-b "$B_ADMIN" "$B_HTTP")" "$B_HTTP"
	B_PID="$CADDY_PID"

	# user 0 of scripts/loadbench/lbusers
	CRED="USER_LOGIN=user0%40example.com&USER_HASH=000000000000000000000000000000000000a5a5"
	URL_A="http://127.0.0.1:$A_HTTP/api/v2/leads?limit_rows=50&$CRED"
	URL_B="http://127.0.0.1:$B_HTTP/api/v2/leads?limit_rows=50"
	for u in "$URL_A" "$URL_B"; do
		code="$(curl -s -o /dev/null -w '%{http_code}' "$u")"
		[[ "$code" == 200 ]] || die "warm-up request answered $code (logs in $WORK; KEEP=1 keeps them)"
	done
	log "warm; saturation (-t$THREADS -c$CONNS), then light load (-t1 -c$LIGHT_CONNS)"

	compare_at "$THREADS" "$CONNS"
	compare_at 1 "$LIGHT_CONNS"
	printf '  RSS after the runs: (a) %s MB, (b) %s MB\n' "$(rss_mb "$A_PID")" "$(rss_mb "$B_PID")"
fi

# --- scale -------------------------------------------------------------------
# rss_detail PID: "VmRSS MB (anon MB + file MB)": file pages are the store's
# memory-mapped tables, which the kernel may drop at will.
rss_detail() {
	awk '/^VmRSS/ { r = $2 } /^RssAnon/ { a = $2 } /^RssFile/ { f = $2 } /^RssShmem/ { f += $2 }
		END { printf "%.0f MB (anon %.0f + file %.0f)", r / 1024, a / 1024, f / 1024 }' "/proc/$1/status"
}
rss_anon_mb() { awk '/^RssAnon/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
# page_cache DIR: how much of DIR's files the kernel's page cache holds (util-linux's
# fincore), and their size: the store's pages the pager unmapped stay there.
page_cache() {
	command -v fincore >/dev/null || { printf 'unknown (no fincore)'; return; }
	find "$1" -type f -print0 | xargs -0 fincore --bytes --noheadings --output RES,SIZE 2>/dev/null |
		awk '{ r += $1; s += $2 } END { printf "%.0f of %.0f MB", r / 1048576, s / 1048576 }'
}

# loadgen_run NAME ARGS...: runs loadgen, prints its line, keeps it in $WORK/NAME.txt.
loadgen_run() {
	local name="$1"
	shift
	"$WORK/bin/loadgen" "$@" | tee "$WORK/$name.txt"
}
# field NAME KEY: KEY's value (rps, p99, ...) in loadgen's line NAME, without "ms".
field() { tr ' ' '\n' <"$WORK/$1.txt" | awk -F= -v k="$2" '$1 == k { sub(/ms$/, "", $2); print $2 }'; }

# profile NAME WHAT: with PROFILE=DIR, saves Caddy's WHAT profile (heap, or
# "profile?seconds=N" for CPU) from its admin endpoint as DIR/NAME.pb.gz.
profile() {
	[[ -n "${PROFILE:-}" ]] || return 0
	mkdir -p "$PROFILE"
	curl -s -o "$PROFILE/$1.pb.gz" "http://127.0.0.1:$S_ADMIN/debug/pprof/$2" || log "profile $1 failed"
}

if [[ "$MODE" == scale || "$MODE" == all ]]; then
	log "seeding $SCALE_USERS users into an encrypted store"
	t0="$(now_ms)"
	"$WORK/bin/seed" -store "$WORK/store-scale" -users "$SCALE_USERS" -key "$STORE_KEY" -workers "${SEED_WORKERS:-512}" \
		${TABLE_MEMORY:+-table-memory "$TABLE_MEMORY"}
	seed_ms=$(($(now_ms) - t0))
	S_ADMIN="$(free_port)" S_HTTP="$(free_port)"
	start_caddy caddy-scale "$(caddyfile_amocrm caddy-scale "$S_ADMIN" "$S_HTTP" "$WORK/store-scale")" "$S_HTTP"
	S_PID="$CADDY_PID"
	USER0="http://127.0.0.1:$S_HTTP/api/v2/leads?USER_LOGIN=user0%40example.com&USER_HASH=000000000000000000000000000000000000a5a5"
	first_ms="$(first_ok_ms "$USER0")"
	sleep 1
	ready_ms="$READY_MS"
	rss_start="$(rss_mb "$S_PID")" anon_start="$(rss_anon_mb "$S_PID")"
	profile heap-start heap
	printf '\nscale: %d users (seeded in %d ms), store %s on disk in %d tables\n' "$SCALE_USERS" "$seed_ms" "$(du -sh "$WORK/store-scale" | cut -f1)" "$(find "$WORK/store-scale" -name '*.sst' | wc -l)"
	printf '  Caddy start to listening        : %d ms; to the first 200: %d ms; RSS %s\n' "$READY_MS" "$first_ms" "$(rss_detail "$S_PID")"
	printf '  one user (-c %d, %s)            : ' "$SCALE_CONNS" "$DURATION"
	loadgen_run one -url "http://127.0.0.1:$S_HTTP" -users 1 -mode random -c "$SCALE_CONNS" -d "$DURATION"
	printf '  cold, every user once (-c %d)   : ' "$SCALE_CONNS"
	loadgen_run cold -url "http://127.0.0.1:$S_HTTP" -users "$SCALE_USERS" -mode seq -c "$SCALE_CONNS"
	profile heap-cold heap
	rss_cold="$(rss_mb "$S_PID")" anon_cold="$(rss_anon_mb "$S_PID")"
	printf '  RSS with every user touched     : %s\n' "$(rss_detail "$S_PID")"
	printf '  the store in the page cache     : %s (the kernel'"'"'s file cache; what Caddy maps of it is its file RSS)\n' "$(page_cache "$WORK/store-scale")"
	printf '  warm, random users (-c %d, %s) : ' "$SCALE_CONNS" "$DURATION"
	if [[ -n "${PROFILE:-}" ]]; then
		profile cpu-warm "profile?seconds=$(($(to_ms "$DURATION" | cut -d. -f1) / 1000 - 1))" &
		prof_pid=$!
	fi
	loadgen_run warm -url "http://127.0.0.1:$S_HTTP" -users "$SCALE_USERS" -mode random -c "$SCALE_CONNS" -d "$DURATION"
	[[ -z "${prof_pid:-}" ]] || wait "$prof_pid"
	profile heap-warm heap
	rss_warm="$(rss_mb "$S_PID")"
	printf '  RSS after                       : %s\n' "$(rss_detail "$S_PID")"
	printf '  store on disk after the runs    : %s\n' "$(du -sh "$WORK/store-scale" | cut -f1)"
	kill "$S_PID"
	wait "$S_PID" 2>/dev/null || true
	# A restart on the full store: the store is opened at start, its cache is cold.
	start_caddy caddy-scale2 "$(caddyfile_amocrm caddy-scale2 "$S_ADMIN" "$S_HTTP" "$WORK/store-scale")" "$S_HTTP"
	first2_ms="$(first_ok_ms "$USER0")"
	sleep 1
	ready2_ms="$READY_MS"
	printf '  restart on the full store       : listening in %d ms, first 200 in %d ms; RSS %s\n' "$ready2_ms" "$first2_ms" "$(rss_detail "$CADDY_PID")"
	awk -v n="$SCALE_USERS" -v rs="$rss_start" -v rc="$rss_cold" -v rw="$rss_warm" -v as="$anon_start" -v ac="$anon_cold" \
		-v cr="$(field cold rps)" -v c99="$(field cold p99)" -v wr="$(field warm rps)" -v w99="$(field warm p99)" \
		-v o99="$(field one p99)" -v ready="$ready_ms" -v first="$first_ms" -v ready2="$ready2_ms" -v first2="$first2_ms" 'BEGIN {
		printf "summary (targets of issue 12):\n"
		printf "  RSS per user over the start      : %.2f KiB (anon %.2f KiB); peak RSS %.0f MB (target <= 1 KiB per user, <= 1,500 MB)\n",
			(rc - rs) * 1024 / n, (ac - as) * 1024 / n, (rw > rc ? rw : rc)
		printf "  warm / cold throughput           : %.0f / %.0f req/s = %.2f (target >= 1)\n", wr, cr, wr / cr
		printf "  p99 warm / cold / one user       : %.2f / %.2f / %.2f ms; warm/one = %.2f (target <= 2)\n", w99, c99, o99, w99 / o99
		printf "  start to listening / first 200   : %d / %d ms; after a restart on the full store %d / %d ms (target <= 1000 each)\n", ready, first, ready2, first2
	}'
fi
