#!/usr/bin/env bash
# scripts/build.sh: build Caddy with amobridge (and any other plugins) as
# xcaddy.toml describes. `make build` runs it.
#
# xcaddy reads no configuration file of its own: this script reads the project's
# manifest (xcaddy.toml), installs the pinned xcaddy into .tools/bin if it is not
# there, and runs one `xcaddy build`. With the manifest as committed that is,
# from the repository root:
#
#   GOPROXY="https://proxy.golang.org|off" \
#     xcaddy build v2.11.9 --output bin/caddy --with github.com/amobridge/amobridge=.
#
# Why GOPROXY is changed (see proxy_for_xcaddy below): xcaddy runs `go get` for
# every plugin, local replacements included. A module proxy that answers 404/410
# for a module it does not know (the public one) lets Go fall back to the local
# replacement. A proxy that answers anything else, such as 403, stops Go at once,
# unless the list separator is `|` (fall through on any error) and the list ends
# with `off`, whose "module lookup disabled" error lets the replacement win. With
# the public proxy the GOPROXY prefix is harmless and may be left out. (Put your
# proxy's URL in place of proxy.golang.org if `go env GOPROXY` names another.)
#
# Environment:
#   FORCE=1          rebuild even if the binary is newer than every input
#   MANIFEST=path    another manifest (its relative paths are relative to its folder)
#   XCADDY_DEBUG=1   and xcaddy's other XCADDY_* variables are passed through
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/build.sh"
MANIFEST="${MANIFEST:-$ROOT/xcaddy.toml}"
TOOLS_BIN="$ROOT/.tools/bin"

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH (Go 1.26 or newer is needed)"
[[ -f "$MANIFEST" ]] || die "manifest $MANIFEST not found"
MANIFEST="$(cd "$(dirname "$MANIFEST")" && pwd)/$(basename "$MANIFEST")"
BASE="$(dirname "$MANIFEST")"

# parse_manifest prints one "section<TAB>key<TAB>value" line per setting. It
# accepts the subset of TOML described at the top of xcaddy.toml and fails,
# naming the line, on anything else.
parse_manifest() {
	awk '
	function fail(msg) { printf "build.sh: error: %s:%d: %s\n", FILENAME, NR, msg > "/dev/stderr"; bad = 1; exit 1 }
	# strip a comment that is not inside double quotes
	function uncomment(s,   i, c, q, out) {
		q = 0; out = ""
		for (i = 1; i <= length(s); i++) {
			c = substr(s, i, 1)
			if (c == "\"") q = !q
			else if (c == "#" && !q) break
			out = out c
		}
		return out
	}
	function trim(s) { sub(/^[ \t\r]+/, "", s); sub(/[ \t\r]+$/, "", s); return s }
	{
		line = trim(uncomment($0))
		if (line == "") next
		if (line ~ /^\[[A-Za-z0-9_.-]+\]$/) { section = substr(line, 2, length(line) - 2); next }
		if (line !~ /=/) fail("expected key = \"value\"")
		eq = index(line, "=")
		key = trim(substr(line, 1, eq - 1)); val = trim(substr(line, eq + 1))
		if (key ~ /^".*"$/) key = substr(key, 2, length(key) - 2)
		if (key == "" || key ~ /[" \t]/) fail("bad key")
		if (val !~ /^"[^"]*"$/) fail("value of " key " must be a double-quoted string")
		val = substr(val, 2, length(val) - 2)
		if (section == "") fail("setting " key " outside a [section]")
		printf "%s\t%s\t%s\n", section, key, val
	}
	END { if (bad) exit 1 }
	' "$MANIFEST"
}

SETTINGS="$(parse_manifest)" || die "cannot read $MANIFEST"

# setting SECTION KEY [DEFAULT]
setting() {
	local v
	v="$(awk -F'\t' -v s="$1" -v k="$2" '$1 == s && $2 == k { v = $3; f = 1 } END { if (f) print v; else exit 1 }' <<<"$SETTINGS")" || v="${3-}"
	printf '%s' "$v"
}

CADDY_VERSION="$(setting caddy version)"
XCADDY_VERSION="$(setting xcaddy version v0.4.5)"
OUTPUT="$(setting build output bin/caddy)"
BUILD_FLAGS="$(setting build flags)"
[[ -n "$CADDY_VERSION" ]] || die "$MANIFEST: [caddy] version is required"
[[ "$OUTPUT" = /* ]] || OUTPUT="$BASE/$OUTPUT"

# The modules that must be in the binary. The handler this project exists for
# is checked whenever this module is one of the plugins; EXPECT_MODULES adds more.
EXPECT=()
if grep -q $'^plugins\tgithub.com/amobridge/amobridge\t' <<<"$SETTINGS"; then
	EXPECT+=(http.handlers.amocrm_auth)
fi
# shellcheck disable=SC2206
EXPECT+=(${EXPECT_MODULES-})

# --with arguments, and the local directories whose sources make the binary stale.
WITH=()
LOCAL_DIRS=()
while IFS=$'\t' read -r section mod val; do
	[[ "$section" == plugins ]] || continue
	case "$val" in
	"" | latest) WITH+=(--with "$mod") ;;
	. | ./* | ../* | /*)
		dir="$val"
		[[ "$dir" = /* ]] || dir="$BASE/$dir"
		[[ -d "$dir" ]] || die "$MANIFEST: plugin $mod: directory $val not found"
		dir="$(cd "$dir" && pwd)"
		LOCAL_DIRS+=("$dir")
		WITH+=(--with "$mod=$dir")
		;;
	*@*) WITH+=(--with "$mod=$val") ;;
	*) WITH+=(--with "$mod@$val") ;;
	esac
done <<<"$SETTINGS"

# newer_input prints the first build input newer than the binary, if any: the
# manifest, this script, and the non-test Go files, go.mod and go.sum of each
# local plugin (tests, the integration tests, the demo and scripts/ excluded).
newer_input() {
	local f
	for f in "$MANIFEST" "$SELF"; do
		[[ "$f" -nt "$OUTPUT" ]] && { printf '%s\n' "$f"; return; }
	done
	local d
	for d in "${LOCAL_DIRS[@]}"; do
		f="$(find "$d" \
			\( -name .git -o -name .tools -o -name node_modules -o -name testdata \
			-o -path "$d/bin" -o -path "$d/integration_test" -o -path "$d/demo" -o -path "$d/scripts" \) -prune \
			-o \( \( -name '*.go' ! -name '*_test.go' \) -o -name go.mod -o -name go.sum \) \
			-newer "$OUTPUT" -print -quit)"
		[[ -n "$f" ]] && { printf '%s\n' "$f"; return; }
	done
	return 0
}

# has_modules BINARY: whether the binary lists every expected module.
has_modules() {
	local list m ok=0
	list="$("$1" list-modules 2>&1)" || { log "$1 list-modules failed:"; printf '%s\n' "$list" >&2; return 1; }
	for m in "${EXPECT[@]}"; do
		if ! grep -qxF "$m" <<<"$list"; then
			log "$1 does not contain the Caddy module $m"
			ok=1
		fi
	done
	return "$ok"
}

if [[ "${FORCE:-0}" != 1 && -x "$OUTPUT" ]]; then
	stale="$(newer_input)"
	if [[ -z "$stale" ]]; then
		if has_modules "$OUTPUT"; then
			log "$OUTPUT is up to date (FORCE=1 rebuilds)"
			exit 0
		fi
	else
		log "rebuilding: $stale changed"
	fi
fi

# proxy_for_xcaddy turns the configured GOPROXY into one that falls through on any
# error and ends in `off`, so that a proxy answering 403 for the unpublished local
# module does not stop the build (see the top of this file): the proxies before the
# first "direct" or "off" are kept, joined by `|`, then `|off` is added.
#   https://proxy.golang.org,direct   ->  https://proxy.golang.org|off
#   https://a.example|https://b.example ->  https://a.example|https://b.example|off
# "direct" is dropped because Go never looks past it, and a local module cannot
# be fetched directly either; private plugins still go direct through GOPRIVATE /
# GONOPROXY, which bypass this list. A GOPROXY that is only "direct" or "off" is
# left alone.
proxy_for_xcaddy() {
	local gp entry out=""
	gp="$(go env GOPROXY)"
	[[ -n "$gp" ]] || gp="https://proxy.golang.org,direct"
	local IFS=',|'
	for entry in $gp; do
		[[ -n "$entry" ]] || continue
		[[ "$entry" == direct || "$entry" == off ]] && break
		out="${out:+$out|}$entry"
	done
	if [[ -z "$out" ]]; then
		printf '%s' "$gp"
	else
		printf '%s|off' "$out"
	fi
}

# Install the pinned xcaddy into .tools/bin (not into the user's GOPATH/bin).
XCADDY="$TOOLS_BIN/xcaddy"
have_version=""
if [[ -x "$XCADDY" ]]; then
	have_version="$(go version -m "$XCADDY" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/caddyserver/xcaddy" { print $3 }')"
fi
if [[ "$have_version" != "$XCADDY_VERSION" ]]; then
	log "installing xcaddy $XCADDY_VERSION into ${TOOLS_BIN#"$ROOT"/}"
	mkdir -p "$TOOLS_BIN"
	(cd "$TOOLS_BIN" && GOBIN="$TOOLS_BIN" go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION") ||
		die "could not install xcaddy $XCADDY_VERSION"
fi

# Build into a temporary file next to the output, check it, then move it into
# place, so that a failed or incomplete build never leaves a binary that looks new.
mkdir -p "$(dirname "$OUTPUT")"
TMP_OUT="$(mktemp "$OUTPUT.tmp.XXXXXX")"
trap 'rm -f "$TMP_OUT"' EXIT

PROXY="$(proxy_for_xcaddy)"
log "GOPROXY=$PROXY $XCADDY build $CADDY_VERSION --output $TMP_OUT ${WITH[*]}"
(
	cd "$BASE"
	export GOPROXY="$PROXY"
	[[ -z "$BUILD_FLAGS" ]] || export XCADDY_GO_BUILD_FLAGS="$BUILD_FLAGS"
	"$XCADDY" build "$CADDY_VERSION" --output "$TMP_OUT" "${WITH[@]}"
) || die "xcaddy build failed (output above)"

has_modules "$TMP_OUT" || die "the built binary lacks required Caddy modules: ${EXPECT[*]}"
mv -f "$TMP_OUT" "$OUTPUT"
trap - EXIT
log "built $OUTPUT: $("$OUTPUT" version | head -n1)"
if [[ ${#EXPECT[@]} -gt 0 ]]; then
	log "contains: ${EXPECT[*]}"
fi
