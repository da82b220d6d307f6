#!/usr/bin/env bash
# End to end with curl, the way an integrator tries the API by hand: submit an erasure job in the seed's shape,
# poll its status until it redirects (303) to the response, read the response.
# Usage: tests/http_e2e.sh BASE_URL TOKEN   (run by tests/http.rs against a demo daemon)
set -euo pipefail
base=$1
token=$2
auth="Authorization: Bearer $token"

headers=$(mktemp)
trap 'rm -f "$headers"' EXIT
body=$(curl -sS -D "$headers" -H "$auth" -H 'Content-Type: text/csv' \
    --data-binary $'"EMAIL","test@test.com"\n"MobileNumber","17815551212",\n' \
    "$base/accounts/demo/gdpr_erasure")
grep -q '^HTTP/1.1 202' "$headers" || { echo "expected 202, got: $(head -1 "$headers")"; exit 1; }
status_url=$(grep -i '^location:' "$headers" | tr -d '\r' | cut -d' ' -f2)
id=$(printf '%s' "$body" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
[ -n "$id" ] && [ "$status_url" = "$base/gdpr_jobs/$id/status" ] || { echo "bad 202 answer: $body / $status_url"; exit 1; }

for _ in $(seq 1 600); do
    code=$(curl -sS -o /dev/null -w '%{http_code}' -H "$auth" "$status_url")
    [ "$code" = 303 ] && break
    [ "$code" = 200 ] || { echo "status answered $code"; exit 1; }
    sleep 0.1
done
[ "$code" = 303 ] || { echo "job $id did not finish"; exit 1; }
response_url=$(curl -sS -o /dev/null -w '%{redirect_url}' -H "$auth" "$status_url")
[ "$response_url" = "$base/gdpr_jobs/$id/response" ] || { echo "303 points at $response_url"; exit 1; }

response=$(curl -sS -f -H "$auth" "$response_url")
deleted=$(printf '%s' "$response" | grep -o '"contactDeleted":true' | wc -l)
[ "$deleted" -eq 2 ] || { echo "expected 2 deleted contacts: $response"; exit 1; }
printf 'erasure job done: %s\n' "$response"
