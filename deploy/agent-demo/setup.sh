#!/bin/sh
# One-off set-up of the agent demo (run by `docker compose run --rm agent-setup` with
# DBWARDEN_TOKEN set to the root token printed by `operator init`): registers the demo
# PostgreSQL as a target, a role, a policy for the agent and an AppRole whose role id and
# secret id are written to the agent-auth volume.
set -eu
: "${DBWARDEN_TOKEN:?set DBWARDEN_TOKEN to a root token}"
addr=${DBWARDEN_ADDR:-http://dbwarden:8200}
api() {
  curl -sSf -H "X-Vault-Token: $DBWARDEN_TOKEN" -X "$1" "$addr/v1/$2" ${3:+-d "$3"}
}
until curl -sf "$addr/v1/sys/health" >/dev/null; do sleep 1; done
api POST database/config/demo '{"plugin_name": "postgresql-database-plugin",
  "connection_url": "postgresql://{{username}}:{{password}}@postgres:5432/dbwarden",
  "username": "dbwarden", "password": "dbwarden", "allowed_roles": "demo"}'
api POST database/roles/demo '{"db_name": "demo", "default_ttl": "5m", "max_ttl": "30m",
  "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '"'"'{{password}}'"'"' VALID UNTIL '"'"'{{expiration}}'"'"';"]}'
api PUT sys/policies/acl/agent-demo '{"policy": "path \"database/creds/demo\" { capabilities = [\"read\"] }\npath \"sys/leases/revoke\" { capabilities = [\"update\"] }"}'
api POST sys/auth/approle '{"type": "approle"}' || true
api POST auth/approle/role/agent-demo '{"token_policies": ["agent-demo"], "token_ttl": "1h"}'
api GET auth/approle/role/agent-demo/role-id | sed 's/.*"role_id":"\([^"]*\)".*/\1/' > /etc/dbwarden-auth/role-id
api POST auth/approle/role/agent-demo/secret-id | sed 's/.*"secret_id":"\([^"]*\)".*/\1/' > /etc/dbwarden-auth/secret-id
chmod 0444 /etc/dbwarden-auth/role-id /etc/dbwarden-auth/secret-id
echo "agent demo configured: docker compose --profile agent-demo up -d agent app"
