#!/usr/bin/env bash
# demo/cluster.sh: two amobridge instances sharing one Redis (`make demo-cluster`).
#
# Starts, all on 127.0.0.1 in a temporary directory: a redis-server (AOF on,
# as the README asks), the fake amoCRM, and two Caddys (A and B) with
# `store redis`. Both instances name B's callback URL as their redirect_uri,
# so amoCRM delivers every authorization code to instance B, whichever
# instance asked for the exchange. Then:
#   1. a cold legacy request goes to instance A: A asks amoCRM for the
#      exchange, amoCRM calls back B, B redeems the code and stores the pair
#      in Redis, A learns of it and answers its client 200;
#   2. the same user's request goes to instance B: B serves it with the
#      stored token, no new exchange.
# Every process the demo started is stopped on exit.
#
# Needs redis-server (apt-get install redis-server), curl and Go. Environment:
# DEMO_KEEP=1 keeps the demo's directory (logs, Caddyfiles, Redis's AOF).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ -t 1 ]]; then B=$'\033[1m' N=$'\033[0m'; else B="" N=""; fi
say() { printf '\n%s%s%s\n' "$B" "$*" "$N"; }
die() { printf 'demo-cluster: error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go is not on PATH"
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
command -v redis-server >/dev/null || die "redis-server is needed (apt-get install redis-server)"
command -v redis-cli >/dev/null || die "redis-cli is needed (apt-get install redis-tools)"

# A TCP port on 127.0.0.1 that nothing listens on, none handed out before
# (free_port runs in a command substitution: the caller records it in TAKEN),
# and below the kernel's ephemeral range, whose ports any outgoing connection
# may take between this check and the bind.
TAKEN=" "
PORT_LO=20000 PORT_HI=32767
if read -r eph_lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null && ((eph_lo - 1 < PORT_HI)); then
	PORT_HI=$((eph_lo - 1))
	((PORT_HI - PORT_LO >= 1000)) || PORT_LO=$((PORT_HI > 11024 ? PORT_HI - 10000 : 1024))
fi
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((PORT_LO + RANDOM % (PORT_HI - PORT_LO + 1)))
		[[ "$TAKEN" == *" $p "* ]] && continue
		port_in_use "$p" && continue
		echo "$p"
		return
	done
	die "no free port found"
}
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

say "Building Caddy with amobridge, the fake amoCRM and the demo's viewer"
scripts/build.sh
go build -o bin/fakeamocrm ./integration_test/fakeamocrm/cmd/fakeamocrm
go build -o bin/demo-show ./demo/show
echo "  bin/caddy, bin/fakeamocrm, bin/demo-show"

DEMO_DIR="$(mktemp -d "${TMPDIR:-/tmp}/amobridge-cluster.XXXXXX")"
REDIS_PORT="$(free_port)"; TAKEN+="$REDIS_PORT "
A_PORT="$(free_port)"; TAKEN+="$A_PORT "
A_ADMIN="$(free_port)"; TAKEN+="$A_ADMIN "
B_PORT="$(free_port)"; TAKEN+="$B_PORT "
B_ADMIN="$(free_port)"; TAKEN+="$B_ADMIN "
CALLBACK_URL="http://127.0.0.1:$B_PORT/amocrm/oauth/callback"
KEY_PREFIX="amobridge-demo:"
FAKE_URL=""
REDIS_PID="" FAKE_PID="" A_PID="" B_PID=""

# stop PID NAME: SIGTERM, then SIGKILL after 10 s.
stop() {
	local pid="$1"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; echo "  stopped $2"; return 0; }
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	echo "  killed $2 (it did not stop within 10 s)"
}
cleanup() {
	local rc=$?
	say "Stopping"
	stop "$A_PID" "Caddy A"
	stop "$B_PID" "Caddy B"
	stop "$FAKE_PID" "the fake amoCRM"
	stop "$REDIS_PID" "redis-server"
	if [[ $rc -ne 0 ]]; then
		for f in a/caddy.log b/caddy.log redis/redis.log fake.log; do
			[[ -s "$DEMO_DIR/$f" ]] || continue
			echo "  $f (tail):"
			tail -n 15 "$DEMO_DIR/$f" | sed 's/^/    /'
		done
	fi
	if [[ "${DEMO_KEEP:-0}" == 1 ]]; then
		echo "  kept $DEMO_DIR (a/ and b/: Caddyfile, caddy.log, access.log; redis/: the AOF; fake.log)"
	else
		rm -rf "$DEMO_DIR"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CLIENT_ID="$(random_hex 4)-$(random_hex 2)-$(random_hex 2)-$(random_hex 2)-$(random_hex 6)"
CLIENT_SECRET="demo-secret-$(random_hex 16)"
LOGIN="demo@example.com"
USER_HASH="$(random_hex 20)" # the user's legacy API key: 40 hex digits
STORE_KEY="$(random_hex 32)"

say "Starting redis-server on 127.0.0.1:$REDIS_PORT (appendonly yes, appendfsync everysec)"
mkdir -p "$DEMO_DIR/redis"
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
# start_redis: starts redis-server on REDIS_PORT; fails if it exits or does not answer.
start_redis() {
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DEMO_DIR/redis" \
		--appendonly yes --appendfsync everysec --save "" --daemonize no \
		--logfile "$DEMO_DIR/redis/redis.log" &
	REDIS_PID=$!
	for _ in $(seq 100); do
		[[ "$(rcli ping 2>/dev/null)" == PONG ]] && return 0
		kill -0 "$REDIS_PID" 2>/dev/null || { wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=""; return 1; }
		sleep 0.1
	done
	return 1
}
for try in 1 2 3 4 5; do
	start_redis && break
	[[ -z "$REDIS_PID" && $try -lt 5 ]] || die "redis-server did not start on port $REDIS_PORT"
	REDIS_PORT="$(free_port)"; TAKEN+="$REDIS_PORT " # taken meanwhile: another port
done
echo "  ready on port $REDIS_PORT"

say "Starting the fake amoCRM (account acme, user $LOGIN; Redirect URI: instance B's callback)"
FAKEAMOCRM_CLIENT_SECRET="$CLIENT_SECRET" bin/fakeamocrm \
	-client-id "$CLIENT_ID" \
	-redirect-uri "$CALLBACK_URL" \
	-users "acme:$LOGIN:$USER_HASH" \
	-listen 127.0.0.1:0 >"$DEMO_DIR/fake.out" 2>"$DEMO_DIR/fake.log" &
FAKE_PID=$!
for _ in $(seq 100); do
	FAKE_URL="$(sed -n 's/^fakeamocrm listening on //p' "$DEMO_DIR/fake.out")"
	[[ -n "$FAKE_URL" ]] && break
	kill -0 "$FAKE_PID" 2>/dev/null || die "the fake amoCRM exited: $(cat "$DEMO_DIR/fake.log")"
	sleep 0.1
done
[[ -n "$FAKE_URL" ]] || die "the fake amoCRM did not start"
echo "  $FAKE_URL"

# caddyfile NAME PORT ADMIN_PORT: one instance's Caddyfile. Everything but the
# ports and directories is the same on both instances: client_id,
# encryption_key, key_prefix, and the redirect_uri (instance B's callback).
caddyfile() {
	local dir="$DEMO_DIR/$1"
	cat <<EOF
# Instance $1 of the demo cluster (demo/cluster.sh).
{
	admin 127.0.0.1:$3
	default_bind 127.0.0.1
	storage file_system $dir/caddy-data
	http_port $2
	auto_https off
	persist_config off
}

http://127.0.0.1:$2 {
	log {
		output file $dir/access.log
		format filter {
			request>uri amocrm_credentials
		}
	}

	amocrm_auth {
		client_id {env.AMOCRM_CLIENT_ID}
		client_secret {env.AMOCRM_CLIENT_SECRET}
		# amoCRM knows one Redirect URI: here, instance B's callback.
		redirect_uri $CALLBACK_URL
		subdomain acme
		# The fake amoCRM, in place of https://acme.amocrm.ru.
		api_base $FAKE_URL/_acct/{subdomain}
		store redis {
			address 127.0.0.1:$REDIS_PORT
			key_prefix $KEY_PREFIX
			encryption_key {env.AMOBRIDGE_STORE_KEY}
		}
	}

	reverse_proxy $FAKE_URL {
		header_up Host acme.amocrm.ru
	}
}
EOF
}

# start_caddy NAME PORT ADMIN_PORT: starts an instance in the background ($! is its pid).
start_caddy() {
	local dir="$DEMO_DIR/$1"
	mkdir -p "$dir/home" "$dir/xdg-data" "$dir/xdg-config"
	caddyfile "$@" >"$dir/Caddyfile"
	HOME="$dir/home" XDG_DATA_HOME="$dir/xdg-data" XDG_CONFIG_HOME="$dir/xdg-config" \
		AMOCRM_CLIENT_ID="$CLIENT_ID" AMOCRM_CLIENT_SECRET="$CLIENT_SECRET" AMOBRIDGE_STORE_KEY="$STORE_KEY" \
		bin/caddy run --adapter caddyfile --config "$dir/Caddyfile" >"$dir/caddy.log" 2>&1 &
}
wait_caddy() { # NAME PID ADMIN_PORT
	for _ in $(seq 300); do
		curl -fsS --noproxy '*' -o /dev/null "http://127.0.0.1:$3/config/" 2>/dev/null && { echo "  instance $1 ready"; return; }
		kill -0 "$2" 2>/dev/null || die "Caddy $1 exited while starting"
		sleep 0.1
	done
	die "Caddy $1 did not start within 30 s"
}

say "Starting two Caddys with store redis: A on http://127.0.0.1:$A_PORT, B on http://127.0.0.1:$B_PORT"
start_caddy a "$A_PORT" "$A_ADMIN"
A_PID=$!
start_caddy b "$B_PORT" "$B_ADMIN"
B_PID=$!
wait_caddy A "$A_PID" "$A_ADMIN"
wait_caddy B "$B_PID" "$B_ADMIN"
echo "  both: redirect_uri $CALLBACK_URL"
echo "        store redis { address 127.0.0.1:$REDIS_PORT  key_prefix $KEY_PREFIX  encryption_key {env.AMOBRIDGE_STORE_KEY} }"

# legacy_call NAME PORT N QUERY: one GET through an instance, shown as a curl command.
legacy_call() {
	local url="http://127.0.0.1:$2/api/v2/account?$4" status
	echo "  \$ curl '$url'"
	status="$(curl -sS --noproxy '*' -o "$DEMO_DIR/answer.$3" -w '%{http_code}' "$url")"
	echo "  -> instance $1 answered HTTP $status: $(head -c 200 "$DEMO_DIR/answer.$3")..."
	[[ "$status" == 200 ]] || die "the legacy request was not served by instance $1 (HTTP $status)"
}
stat_of() { curl -fsS --noproxy '*' "$FAKE_URL/_fake/stats" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }
obtained() { grep -c '"msg":"tokens obtained"' "$DEMO_DIR/$1/caddy.log" || true; }
callbacks_in() { grep -c '"uri":"/amocrm/oauth/callback' "$DEMO_DIR/$1/access.log" 2>/dev/null || true; }

say "1. A cold legacy request (USER_LOGIN + USER_HASH) to instance A"
echo "  (A calls amoCRM's exchange_api_key; amoCRM sends the code to the Redirect URI, instance B;"
echo "   B takes the pending exchange from Redis, redeems the code and stores the pair in Redis;"
echo "   A, waiting, learns of the new pair from Redis and forwards the request with the token)"
legacy_call A "$A_PORT" 1 "USER_LOGIN=demo%40example.com&USER_HASH=$USER_HASH&foo=bar"

say "What amoCRM (the fake) received"
bin/demo-show -fake "$FAKE_URL" requests
say "amoCRM's callback: to $CALLBACK_URL (instance B)"
curl -fsS --noproxy '*' "$FAKE_URL/_fake/callbacks" | sed 's/^/  /'
echo
echo "  callbacks in the access logs:  instance A: $(callbacks_in a)  instance B: $(callbacks_in b)"
echo "  \"tokens obtained\" (the code redeemed) in the logs:  instance A: $(obtained a)  instance B: $(obtained b)"
say "amoCRM's counters"
bin/demo-show -fake "$FAKE_URL" stats
[[ "$(stat_of ExchangeCalls)" == 1 ]] || die "expected exactly one exchange"
[[ "$(stat_of CallbacksDelivered)" == 1 ]] || die "expected one callback delivered"
[[ "$(obtained b)" == 1 && "$(obtained a)" == 0 ]] || die "the code was not redeemed by instance B alone"
[[ "$(callbacks_in b)" == 1 && "$(callbacks_in a)" == 0 ]] || die "the callback did not reach instance B alone"

say "What the cluster keeps in Redis (key names; every value holding a token is encrypted)"
rcli --scan --pattern "${KEY_PREFIX}*" | sort | sed 's/^/  /'

say "2. The same user's request to instance B"
legacy_call B "$B_PORT" 2 "USER_LOGIN=demo%40example.com&USER_HASH=$USER_HASH&page=2"
say "What amoCRM received this time"
bin/demo-show -fake "$FAKE_URL" requests
say "amoCRM's counters: still one exchange, no new code grant: B used the pair stored in Redis"
bin/demo-show -fake "$FAKE_URL" stats
[[ "$(stat_of ExchangeCalls)" == 1 && "$(stat_of CodeGrants)" == 1 ]] || die "instance B exchanged again"
[[ "$(stat_of Violations)" == 0 ]] || die "amoCRM saw legacy credentials"

say "Done: A asked, amoCRM called back B, and both instances serve the user with one exchange."
