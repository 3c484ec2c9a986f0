#!/usr/bin/env bash
# demo/run.sh: amobridge end to end on this machine (`make demo`).
#
# Builds Caddy with the module (scripts/build.sh) and the fake amoCRM, starts
# both on 127.0.0.1, sends a legacy request (USER_LOGIN + USER_HASH) through
# Caddy with curl, shows what amoCRM (the fake) received: a Bearer token and no
# legacy credentials; then a second request, which the stored token serves
# without a new exchange. Both processes are stopped on exit.
#
# Environment: DEMO_PORT / DEMO_ADMIN_PORT pick Caddy's ports (default: free
# ones); DEMO_KEEP=1 keeps the demo's directory (logs, store) afterwards.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ -t 1 ]]; then B=$'\033[1m' N=$'\033[0m'; else B="" N=""; fi
say() { printf '\n%s%s%s\n' "$B" "$*" "$N"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go is not on PATH"
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"

# A TCP port on 127.0.0.1 that nothing listens on.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 30000))
		port_in_use "$p" || { echo "$p"; return; }
	done
	die "no free port found"
}
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

say "Building Caddy with amobridge, the fake amoCRM and the demo's viewer"
scripts/build.sh
go build -o bin/fakeamocrm ./integration_test/fakeamocrm/cmd/fakeamocrm
go build -o bin/demo-show ./demo/show
echo "  bin/caddy, bin/fakeamocrm, bin/demo-show"

DEMO_DIR="$(mktemp -d "${TMPDIR:-/tmp}/amobridge-demo.XXXXXX")"
DEMO_PORT="${DEMO_PORT:-$(free_port)}"
DEMO_ADMIN_PORT="${DEMO_ADMIN_PORT:-$(free_port)}"
FAKE_URL=""
CADDY_PID=""
FAKE_PID=""
mkdir -p "$DEMO_DIR/home" "$DEMO_DIR/xdg-data" "$DEMO_DIR/xdg-config"

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
	stop "$CADDY_PID" Caddy
	stop "$FAKE_PID" "the fake amoCRM"
	if [[ $rc -ne 0 && -f "$DEMO_DIR/caddy.log" ]]; then
		echo "  Caddy's log (tail):"
		tail -n 20 "$DEMO_DIR/caddy.log" | sed 's/^/    /'
	fi
	if [[ "${DEMO_KEEP:-0}" == 1 ]]; then
		echo "  kept $DEMO_DIR (caddy.log, access.log, store/)"
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

say "Starting the fake amoCRM (account acme, user $LOGIN)"
FAKEAMOCRM_CLIENT_SECRET="$CLIENT_SECRET" bin/fakeamocrm \
	-client-id "$CLIENT_ID" \
	-redirect-uri "http://127.0.0.1:$DEMO_PORT/amocrm/oauth/callback" \
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

say "Starting Caddy with demo/Caddyfile on http://127.0.0.1:$DEMO_PORT"
export DEMO_DIR DEMO_PORT DEMO_ADMIN_PORT FAKE_URL
HOME="$DEMO_DIR/home" XDG_DATA_HOME="$DEMO_DIR/xdg-data" XDG_CONFIG_HOME="$DEMO_DIR/xdg-config" \
	AMOCRM_CLIENT_ID="$CLIENT_ID" AMOCRM_CLIENT_SECRET="$CLIENT_SECRET" AMOBRIDGE_STORE_KEY="$STORE_KEY" \
	bin/caddy run --adapter caddyfile --config demo/Caddyfile >"$DEMO_DIR/caddy.log" 2>&1 &
CADDY_PID=$!
for _ in $(seq 300); do
	curl -fsS --noproxy '*' -o /dev/null "http://127.0.0.1:$DEMO_ADMIN_PORT/config/" 2>/dev/null && break
	kill -0 "$CADDY_PID" 2>/dev/null || die "Caddy exited while starting"
	sleep 0.1
done
curl -fsS --noproxy '*' -o /dev/null "http://127.0.0.1:$DEMO_ADMIN_PORT/config/" || die "Caddy did not start"
echo "  ready"

# legacy_call N QUERY: one GET through Caddy, shown as a curl command.
legacy_call() {
	local url="http://127.0.0.1:$DEMO_PORT/api/v2/account?$2" status
	echo "  \$ curl '$url'"
	status="$(curl -sS --noproxy '*' -o "$DEMO_DIR/answer.$1" -w '%{http_code}' "$url")"
	echo "  -> HTTP $status: $(head -c 240 "$DEMO_DIR/answer.$1")..."
	[[ "$status" == 200 ]] || die "the legacy request was not served (HTTP $status)"
}
exchanges() { curl -fsS --noproxy '*' "$FAKE_URL/_fake/stats" | sed -n 's/.*"ExchangeCalls":\([0-9]*\).*/\1/p'; }
violations() { curl -fsS --noproxy '*' "$FAKE_URL/_fake/stats" | sed -n 's/.*"Violations":\([0-9]*\).*/\1/p'; }

say "1. A legacy client's call with USER_LOGIN + USER_HASH, for a user amobridge has never seen"
echo "  (amobridge calls amoCRM's exchange_api_key, amoCRM sends the code to the callback,"
echo "   amobridge trades it for tokens, stores them, and forwards the request with the token)"
legacy_call 1 "USER_LOGIN=demo%40example.com&USER_HASH=$USER_HASH&foo=bar"

say "What amoCRM (the fake) received"
bin/demo-show -fake "$FAKE_URL" requests
say "amoCRM's counters"
bin/demo-show -fake "$FAKE_URL" stats
[[ "$(exchanges)" == 1 ]] || die "expected exactly one exchange"

say "2. The same client calls again"
legacy_call 2 "USER_LOGIN=demo%40example.com&USER_HASH=$USER_HASH&page=2"
say "What amoCRM received this time"
bin/demo-show -fake "$FAKE_URL" requests
say "amoCRM's counters: still one exchange, the stored token was used"
bin/demo-show -fake "$FAKE_URL" stats
[[ "$(exchanges)" == 1 ]] || die "the second call exchanged again"
[[ "$(violations)" == 0 ]] || die "amoCRM saw legacy credentials"

say "The access log (credentials deleted from the logged URI by the log filter)"
sed -n 's/.*"uri":"\([^"]*\)".*/  \1/p' "$DEMO_DIR/access.log" || true

say "Done: the legacy client never changed, amoCRM only ever saw OAuth Bearer tokens."
