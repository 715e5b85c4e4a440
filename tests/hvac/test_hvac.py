"""hvac 2.4.x against a running dbwarden dev server: the client must work unchanged.

Run by tests/api/hvac.rs, which starts the server and a PostgreSQL cluster and passes:
VAULT_ADDR, VAULT_TOKEN, PG_URL_TEMPLATE, PG_USER, PG_PASSWORD, ADMIN_USER, ADMIN_PASSWORD.
"""
import os
import sys
import time

import hvac
from hvac import exceptions

checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1


def raises(exc, fn, what):
    try:
        fn()
    except exc:
        check(True, what)
        return
    except Exception as e:  # noqa: BLE001
        print(f"FAILED: {what}: raised {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"FAILED: {what}: no exception", file=sys.stderr)
    sys.exit(1)


client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
check(client.is_authenticated(), "is_authenticated with the root token")
check(not hvac.Client(url=os.environ["VAULT_ADDR"], token="dbw.bogus").is_authenticated(), "bogus token not authenticated")
health = client.sys.read_health_status(method="GET")
check(health["initialized"] is True and health["sealed"] is False, "sys/health")

# Mounts.
client.sys.enable_secrets_engine("database", path="db2")
mounts = client.sys.list_mounted_secrets_engines()["data"]
check("db2/" in mounts and mounts["db2/"]["type"] == "database", "enable_secrets_engine and list")
raises(exceptions.InvalidRequest, lambda: client.sys.enable_secrets_engine("database", path="db2"), "mount twice")
client.sys.disable_secrets_engine("db2")
check("db2/" not in client.sys.list_mounted_secrets_engines()["data"], "disable_secrets_engine")

db = client.secrets.database
# Connections.
db.configure(
    name="pg",
    plugin_name="postgresql-database-plugin",
    allowed_roles=["ro", "admin-ro"],
    connection_url=os.environ["PG_URL_TEMPLATE"],
    username=os.environ["ADMIN_USER"],
    password=os.environ["ADMIN_PASSWORD"],
)
conn = db.read_connection("pg")["data"]
check(conn["plugin_name"] == "postgresql-database-plugin", "read_connection plugin_name")
check("password" not in conn["connection_details"], "read_connection hides the password")
check(conn["allowed_roles"] == ["ro", "admin-ro"], "allowed_roles round trip")
check(db.list_connections()["data"]["keys"] == ["pg"], "list_connections")
db.reset_connection("pg")
raises(exceptions.InvalidPath, lambda: db.read_connection("nope"), "read missing connection is InvalidPath")
raises(exceptions.InvalidRequest, lambda: db.configure(name="bad", plugin_name="no-such-plugin", connection_url="x"), "unknown plugin")

# Roles.
db.create_role(
    name="ro",
    db_name="pg",
    creation_statements=["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"],
    default_ttl="1h",
    max_ttl="24h",
)
role = db.read_role("ro")["data"]
check(role["db_name"] == "pg" and role["default_ttl"] == 3600 and role["max_ttl"] == 86400, "read_role")
check(db.list_roles()["data"]["keys"] == ["ro"], "list_roles")
raises(exceptions.InvalidPath, lambda: db.read_role("missing"), "read missing role is InvalidPath")
raises(exceptions.InvalidRequest, lambda: db.generate_credentials("missing"), "creds of unknown role")

# Credentials and leases.
creds = db.generate_credentials("ro")
lease_id = creds["lease_id"]
check(lease_id.startswith("database/creds/ro/") and creds["lease_duration"] == 3600, "generate_credentials lease")
check(len(creds["data"]["password"]) == 20 and creds["data"]["username"].startswith("v-root-ro-"), "credential shape")
lease = client.sys.read_lease(lease_id)["data"]
check(lease["id"] == lease_id and lease["renewable"] is True, "read_lease")
check(client.sys.list_leases("database/creds/ro")["data"]["keys"] == [lease_id.rsplit("/", 1)[1]], "list_leases")
renewed = client.sys.renew_lease(lease_id)
check(renewed["lease_id"] == lease_id and renewed["lease_duration"] == 3600, "renew_lease without increment")
renewed = client.sys.renew_lease(lease_id, increment=600)
check(renewed["lease_duration"] == 600, "renew_lease with increment")
client.sys.revoke_lease(lease_id)
raises(exceptions.InvalidRequest, lambda: client.sys.read_lease(lease_id), "revoked lease is gone")
for _ in range(2):
    db.generate_credentials("ro")
client.sys.revoke_prefix("database/creds/ro")
raises(exceptions.InvalidPath, lambda: client.sys.list_leases("database/creds/ro"), "revoke_prefix")
db.generate_credentials("ro")
client.sys.revoke_force("database/creds/ro")
raises(exceptions.InvalidPath, lambda: client.sys.list_leases("database/creds/ro"), "revoke_force")

# Renewal clamps to issue time + max TTL, with Vault's warning; no increment resets to default_ttl.
db.create_role(name="clamp", db_name="pg", default_ttl=60, max_ttl=120,
               creation_statements=["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';"])
db.configure(name="pg", plugin_name="postgresql-database-plugin", allowed_roles=["ro", "admin-ro", "clamp"])
clamp = db.generate_credentials("clamp")
check(clamp["lease_duration"] == 60, "clamp role default_ttl")
capped = client.sys.renew_lease(clamp["lease_id"], increment=3600)
check(capped["lease_duration"] <= 120, "renew is clamped to max_ttl")
check(any("TTL value is capped accordingly" in w for w in capped["warnings"]), "clamp warning text")
check(client.sys.renew_lease(clamp["lease_id"])["lease_duration"] == 60, "renew without increment resets to default_ttl")
client.sys.revoke_lease(clamp["lease_id"])

# Root rotation: issuance keeps working with the new admin password.
db.rotate_root_credentials("pg")
check(db.generate_credentials("ro")["data"]["username"], "creds after rotate_root_credentials")

# Static roles (hvac always sends db_name, username, rotation_statements and rotation_period).
db.configure(name="pg", plugin_name="postgresql-database-plugin", allowed_roles=["ro", "admin-ro", "clamp", "static-app"])
db.create_static_role(name="static-app", db_name="pg", username=os.environ["STATIC_USER"],
                      rotation_statements=["ALTER ROLE \"{{name}}\" WITH PASSWORD '{{password}}';"], rotation_period=86400)
static_role = db.read_static_role("static-app")["data"]
check(static_role["username"] == os.environ["STATIC_USER"] and static_role["rotation_period"] == 86400, "read_static_role")
check(db.list_static_roles()["data"]["keys"] == ["static-app"], "list_static_roles")
static_creds = db.get_static_credentials("static-app")["data"]
check(static_creds["username"] == os.environ["STATIC_USER"] and len(static_creds["password"]) == 20, "get_static_credentials")
check(0 < static_creds["ttl"] <= 86400 and static_creds["last_vault_rotation"], "static creds ttl and rotation time")
db.rotate_static_role_credentials("static-app")
check(db.get_static_credentials("static-app")["data"]["password"] != static_creds["password"], "rotate_static_role_credentials")
raises(exceptions.InvalidRequest, lambda: db.create_static_role(name="static-bad", db_name="pg", username="x", rotation_statements=[], rotation_period=1), "rotation_period below 5 s")
db.delete_static_role("static-app")
raises(exceptions.InvalidPath, lambda: db.list_static_roles(), "delete_static_role")

# Policies.
client.sys.create_or_update_policy("creds-ro", 'path "database/creds/ro" { capabilities = ["read"] }')
check("creds-ro" in client.sys.list_policies()["data"]["policies"], "list_policies")
check("database/creds/ro" in client.sys.read_policy("creds-ro")["data"]["rules"], "read_policy")
raises(exceptions.InvalidRequest, lambda: client.sys.create_or_update_policy("bad", 'path "x" { capabilities = ["fly"] }'), "bad policy")

# Tokens.
tok = client.auth.token.create(policies=["creds-ro"], ttl="1h")["auth"]
check(tok["policies"] == ["creds-ro", "default"] and tok["lease_duration"] == 3600, "token create")
looked = client.auth.token.lookup(tok["client_token"])["data"]
check(looked["accessor"] == tok["accessor"] and looked["ttl"] <= 3600, "token lookup")
check(client.auth.token.lookup_accessor(tok["accessor"])["data"]["policies"] == ["creds-ro", "default"], "lookup_accessor")
renewed = client.auth.token.renew(tok["client_token"], increment="30m")["auth"]
check(renewed["lease_duration"] == 1800, "token renew")

limited = hvac.Client(url=os.environ["VAULT_ADDR"], token=tok["client_token"])
check(limited.is_authenticated(), "limited token authenticated")
check(limited.auth.token.lookup_self()["data"]["accessor"] == tok["accessor"], "lookup_self")
check(limited.auth.token.renew_self(increment=600)["auth"]["lease_duration"] == 600, "renew_self")
limited_creds = limited.secrets.database.generate_credentials("ro")
check(limited_creds["data"]["username"], "limited token gets creds")
raises(exceptions.Forbidden, lambda: limited.secrets.database.read_connection("pg"), "limited token: config forbidden")
raises(exceptions.Forbidden, lambda: limited.sys.list_mounted_secrets_engines(), "limited token: sys forbidden")
limited.auth.token.revoke_self()
check(not limited.is_authenticated(), "revoke_self")
# Like Vault, a revoked token's leases are revoked by the background worker, promptly.
for _ in range(100):
    try:
        client.sys.read_lease(limited_creds["lease_id"])
    except exceptions.InvalidRequest:
        break
    time.sleep(0.1)
raises(exceptions.InvalidRequest, lambda: client.sys.read_lease(limited_creds["lease_id"]), "token revocation revokes its leases")

other = client.auth.token.create(policies=["default"])["auth"]
client.auth.token.revoke(other["client_token"])
check(not hvac.Client(url=os.environ["VAULT_ADDR"], token=other["client_token"]).is_authenticated(), "token revoke")
raises(exceptions.Forbidden, lambda: hvac.Client(url=os.environ["VAULT_ADDR"], token="dbw.bogus").secrets.database.list_roles(), "bad token is Forbidden")

db.delete_role("ro")
db.delete_role("clamp")
raises(exceptions.InvalidPath, lambda: db.list_roles(), "delete_role then empty list is InvalidPath")
client.sys.revoke_prefix("database/creds")
db.delete_connection("pg")
raises(exceptions.InvalidPath, lambda: db.list_connections(), "delete_connection")
client.sys.delete_policy("creds-ro")

print(f"hvac compatibility: all checks passed ({checks} checks)")
