#!/usr/bin/env bash
# Makes the Secrets (and the ConfigMap goodgo-jwks) the local overlay
# references, in the namespace goodgo of the current kubectl context:
#   - <service>-tls: a certificate per binary from a development CA
#     (`goodgoctl dev init`), with tls.crt, tls.key and ca.crt as
#     cert-manager would write them;
#   - <service>-secrets: DATABASE_URL (the service's role, demo password of
#     roles.sql) and fresh keys (`goodgoctl keys new`): PII_KEYS,
#     VERSION_TOKEN_KEYS, SAGA_CONTEXT_KEYS, and one OUTBOX_KEYS shared by
#     the writers and the relay, which decrypts what they seal;
#   - <service>-migrate: MIGRATE_DATABASE_URL, the owner (postgres);
#   - goodgo-redis (REDIS_URL), postgres (POSTGRES_PASSWORD);
#   - goodgo-jwks: the development token issuer's public keys.
# The binaries run in production mode (development mode is refused inside
# Kubernetes), so nothing here is a public development key. Mint tokens
# with `go run ./goodgoctl dev token -dir .dev-k8s -sub <user-id>`.
#
# Run from the repository root: deploy/k8s/overlays/local/secrets.sh
# DRY_RUN=1 prints the objects instead of applying them. Run again, it
# keeps the CA, the issuer and the keys already made (in .dev-k8s/).
set -euo pipefail

ns=goodgo
dir=${GOODGO_K8S_DEV_DIR:-.dev-k8s}
services=(order payment inventory orchestrator outbox-relay)

apply() {
	if [[ -n ${DRY_RUN:-} ]]; then
		echo "---"
		cat
	else
		kubectl apply -f -
	fi
}
create() { kubectl create --dry-run=client -o yaml -n "$ns" "$@" | apply; }

go run ./goodgoctl dev init -dir "$dir" >&2

# A key per purpose and service, made once and kept in $dir/keys.
mkdir -p "$dir/keys"
key() {
	local f="$dir/keys/$1"
	[[ -s $f ]] || go run ./goodgoctl keys new -id k1 >"$f"
	cat "$f"
}
pgpass() {
	local f="$dir/keys/postgres-password"
	[[ -s $f ]] || head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$f"
	cat "$f"
}

kubectl create namespace "$ns" --dry-run=client -o yaml | apply
create secret generic postgres --from-literal=POSTGRES_PASSWORD="$(pgpass)"
create secret generic goodgo-redis --from-literal=REDIS_URL=redis://redis:6379/0
create configmap goodgo-jwks --from-file=jwks.json="$dir/jwt/jwks.json"

outbox=$(key outbox)
for s in "${services[@]}"; do
	create secret generic "$s-tls" --from-file=tls.crt="$dir/pki/$s.crt" \
		--from-file=tls.key="$dir/pki/$s.key" --from-file=ca.crt="$dir/pki/ca.crt"
	db=goodgo_$s
	case $s in
	order | payment | inventory)
		create secret generic "$s-secrets" \
			--from-literal=DATABASE_URL="postgres://$db:$db@postgres:5432/$db?sslmode=disable" \
			--from-literal=PII_KEYS="$(key "$s-pii")" \
			--from-literal=VERSION_TOKEN_KEYS="$(key "$s-version-token")" \
			--from-literal=OUTBOX_KEYS="$outbox"
		;;
	orchestrator)
		create secret generic "$s-secrets" \
			--from-literal=DATABASE_URL="postgres://$db:$db@postgres:5432/$db?sslmode=disable" \
			--from-literal=PII_KEYS="$(key "$s-pii")" \
			--from-literal=SAGA_CONTEXT_KEYS="$(key "$s-saga-context")"
		;;
	outbox-relay)
		urls=""
		for d in order payment inventory; do
			urls+="${urls:+,}postgres://goodgo_relay:goodgo_relay@postgres:5432/goodgo_$d?sslmode=disable"
		done
		create secret generic "$s-secrets" --from-literal=OUTBOX_DATABASE_URLS="$urls" \
			--from-literal=OUTBOX_KEYS="$outbox"
		;;
	esac
	if [[ $s != outbox-relay ]]; then
		create secret generic "$s-migrate" \
			--from-literal=MIGRATE_DATABASE_URL="postgres://postgres:$(pgpass)@postgres:5432/$db?sslmode=disable"
	fi
done
