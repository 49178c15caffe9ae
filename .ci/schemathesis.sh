#!/usr/bin/env bash
# Runs schemathesis against a real `vellum server`, then against a real archiver's records
# API (as the first officer): no response of 500 or above, and every response matches each
# service's /openapi.json. Usage: .ci/schemathesis.sh PATH/TO/vellum
set -euo pipefail
cd "$(dirname "$0")/.."
vellum="$1"

venv="${SCHEMATHESIS_VENV:-/var/tmp/vellum-schemathesis-venv}"
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==3.39.16" "hypothesis==6.120.0" "cryptography==44.0.2"
fi

data="$(mktemp -d)"
out="$data/server.out"
"$vellum" server --listen 127.0.0.1:0 --data "$data/server" >"$out" 2>"$data/server.err" &
server=$!
archiver=""
trap 'kill $server $archiver 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"' EXIT

# The first line of standard output names the bound address.
for _ in $(seq 100); do
    [ -s "$out" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$data/server.err" >&2; exit 1; }
    sleep 0.1
done
url="$(head -n1 "$out" | grep -o 'http://[0-9.:]*')"
[ -n "$url" ] || { echo "no address on the server's first line" >&2; exit 1; }

start=$SECONDS
VELLUM_URL="$url" VELLUM_ADMIN_TOKEN="$(cat "$data/server/admin-token")" \
PYTHONPATH=.ci SCHEMATHESIS_HOOKS=schemathesis_hooks \
timeout 300 "$venv/bin/schemathesis" run "$url/openapi.json" \
    --checks not_a_server_error,response_schema_conformance \
    --hypothesis-max-examples 30 \
    --hypothesis-deadline None \
    --hypothesis-suppress-health-check all \
    --hypothesis-seed 7 \
    --generation-with-security-parameters false \
    --show-trace \
    --experimental=openapi-3.1 \
    --no-color
echo "schemathesis took $((SECONDS - start)) s"

# The records API: an archiver enrolled with the server above, sealed, driven with the first
# officer's token (every role's routes are open to it).
admin_token="$data/server/admin-token"
code="$("$vellum" admin --server "$url" --token-file "$admin_token" records init \
    --custodians 3 --threshold 2 --out "$data/keys" | tail -n1)"
archiver_out="$data/archiver.out"
"$vellum" archiver --server "$url" --data "$data/archiver" --records-key "$data/keys/records.pub" \
    --code "$code" --listen 127.0.0.1:0 >"$archiver_out" 2>"$data/archiver.err" &
archiver=$!
for _ in $(seq 200); do
    [ -s "$archiver_out" ] && break
    kill -0 "$archiver" 2>/dev/null || { cat "$data/archiver.err" >&2; exit 1; }
    sleep 0.1
done
records_url="$(head -n1 "$archiver_out" | grep -o 'http://[0-9.:]*')"
[ -n "$records_url" ] || { echo "no address on the archiver's first line" >&2; exit 1; }

start=$SECONDS
timeout 300 "$venv/bin/schemathesis" run "$records_url/openapi.json" \
    --header "Authorization: Bearer $(cat "$data/archiver/records-token")" \
    --checks not_a_server_error,response_schema_conformance \
    --hypothesis-max-examples 30 \
    --hypothesis-deadline None \
    --hypothesis-suppress-health-check all \
    --hypothesis-seed 7 \
    --show-trace \
    --experimental=openapi-3.1 \
    --no-color
echo "schemathesis (records API) took $((SECONDS - start)) s"
