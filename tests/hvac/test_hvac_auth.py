"""hvac 2.4.x auth methods against a running dbwarden dev server: AppRole, Kubernetes and
userpass (with TOTP) must work with hvac's own calls.

Run by tests/api/hvac.rs, which starts the server and a PostgreSQL database and passes:
VAULT_ADDR, VAULT_TOKEN, PG_URL_TEMPLATE, PG_USER, PG_PASSWORD, K8S_PEM (certificate of the signing key),
K8S_ISSUER, and signed ServiceAccount JWTs: K8S_JWT (team-a/app, audience vault),
K8S_JWT_OTHER_NS, K8S_JWT_EXPIRED, K8S_JWT_BAD_SIG, K8S_JWT_WRONG_AUD.
"""
import base64
import hashlib
import hmac
import os
import struct
import sys
import time

import hvac
from hvac import exceptions

ADDR = os.environ["VAULT_ADDR"]
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


def totp(secret_b32, at):
    """RFC 6238 with SHA-1, 6 digits, 30 s steps (what authenticator apps do)."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = (struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1000000
    return f"{code:06d}"


client = hvac.Client(url=ADDR, token=os.environ["VAULT_TOKEN"])

# Mounts through sys/auth.
client.sys.enable_auth_method("approle")
client.sys.enable_auth_method("approle", path="ci-approle", description="CI runners")
client.sys.enable_auth_method("kubernetes")
client.sys.enable_auth_method("userpass", config={"default_lease_ttl": "1h", "max_lease_ttl": "4h"})
methods = client.sys.list_auth_methods()["data"]
check({"token/", "approle/", "ci-approle/", "kubernetes/", "userpass/"} <= set(methods), "list_auth_methods")
check(methods["ci-approle/"]["type"] == "approle" and methods["ci-approle/"]["description"] == "CI runners", "mount shape")
raises(exceptions.InvalidRequest, lambda: client.sys.enable_auth_method("approle"), "enable twice")
tuning = client.sys.read_auth_method_tuning("userpass")["data"]
check(tuning["default_lease_ttl"] == 3600 and tuning["max_lease_ttl"] == 14400, "read_auth_method_tuning")

# A database role the logged-in identities may use.
db = client.secrets.database
db.configure(name="pg", plugin_name="postgresql-database-plugin", allowed_roles=["ro"],
             connection_url=os.environ["PG_URL_TEMPLATE"],
             username=os.environ["PG_USER"], password=os.environ["PG_PASSWORD"])
db.create_role(name="ro", db_name="pg", default_ttl="1h", max_ttl="2h",
               creation_statements=["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"])
client.sys.create_or_update_policy("creds-ro", 'path "database/creds/ro" { capabilities = ["read"] }')

# AppRole.
approle = client.auth.approle
approle.create_or_update_approle("web", token_policies=["creds-ro"], token_ttl="20m", token_max_ttl="1h",
                                 secret_id_num_uses=5, secret_id_ttl="1h")
role = approle.read_role("web")["data"]
check(role["token_policies"] == ["creds-ro"] and role["token_ttl"] == 1200 and role["secret_id_num_uses"] == 5, "read_role")
check(approle.list_roles()["data"]["keys"] == ["web"], "approle list_roles")
role_id = approle.read_role_id("web")["data"]["role_id"]
generated = approle.generate_secret_id("web", metadata={"team": "payments"})["data"]
check(generated["secret_id_num_uses"] == 5 and generated["secret_id_ttl"] == 3600, "generate_secret_id")
looked = approle.read_secret_id("web", generated["secret_id"])["data"]
check(looked["secret_id_accessor"] == generated["secret_id_accessor"] and looked["metadata"] == {"team": "payments"}, "read_secret_id")
check(generated["secret_id_accessor"] in approle.list_secret_id_accessors("web")["data"]["keys"], "list_secret_id_accessors")
check(approle.read_secret_id_accessor("web", generated["secret_id_accessor"])["data"]["secret_id_num_uses"] == 5, "read_secret_id_accessor")

app = hvac.Client(url=ADDR)
resp = app.auth.approle.login(role_id=role_id, secret_id=generated["secret_id"])
check(app.token == resp["auth"]["client_token"] and app.is_authenticated(), "approle.login stores the token")
check(resp["auth"]["metadata"] == {"role_name": "web", "team": "payments"}, "approle login metadata")
check(resp["auth"]["policies"] == ["creds-ro", "default"] and resp["auth"]["lease_duration"] == 1200, "approle login auth block")
creds = app.secrets.database.generate_credentials("ro")
check(creds["data"]["username"].startswith("v-approle-ro-"), "approle token gets database credentials")
raises(exceptions.Forbidden, lambda: app.secrets.database.read_connection("pg"), "approle token: config forbidden")
raises(exceptions.InvalidRequest, lambda: hvac.Client(url=ADDR).auth.approle.login(role_id=role_id, secret_id="wrong"), "bad secret_id")

approle.create_custom_secret_id("web", "a-custom-secret-id-for-hvac")
hvac.Client(url=ADDR).auth.approle.login(role_id=role_id, secret_id="a-custom-secret-id-for-hvac")
approle.destroy_secret_id("web", "a-custom-secret-id-for-hvac")
raises(exceptions.InvalidRequest, lambda: hvac.Client(url=ADDR).auth.approle.login(role_id=role_id, secret_id="a-custom-secret-id-for-hvac"), "destroy_secret_id")
approle.destroy_secret_id_accessor("web", generated["secret_id_accessor"])
raises(exceptions.InvalidRequest, lambda: hvac.Client(url=ADDR).auth.approle.login(role_id=role_id, secret_id=generated["secret_id"]), "destroy_secret_id_accessor")
approle.update_role_id("web", "web-role-id")
check(approle.read_role_id("web")["data"]["role_id"] == "web-role-id", "update_role_id")
limited = approle.generate_secret_id("web", cidr_list=["127.0.0.1/32"], token_bound_cidrs=["127.0.0.1/32"])["data"]
pinned = hvac.Client(url=ADDR)
pinned.auth.approle.login(role_id="web-role-id", secret_id=limited["secret_id"])
check(pinned.auth.token.lookup_self()["data"]["bound_cidrs"] == ["127.0.0.1/32"], "token_bound_cidrs from the secret ID")

# A second AppRole mount.
approle.create_or_update_approle("runner", token_policies=["default"], mount_point="ci-approle")
ci_id = approle.read_role_id("runner", mount_point="ci-approle")["data"]["role_id"]
ci_secret = approle.generate_secret_id("runner", mount_point="ci-approle")["data"]["secret_id"]
ci = hvac.Client(url=ADDR)
ci.auth.approle.login(role_id=ci_id, secret_id=ci_secret, mount_point="ci-approle")
check(ci.auth.token.lookup_self()["data"]["display_name"] == "ci-approle", "login on a second mount")
approle.delete_role("runner", mount_point="ci-approle")
client.sys.disable_auth_method("ci-approle")
check(not ci.is_authenticated(), "disabling a method revokes its tokens")

# Kubernetes: hvac sends the legacy policies/ttl/max_ttl/period names.
k8s = client.auth.kubernetes
k8s.configure(kubernetes_host="https://127.0.0.1:1", pem_keys=[os.environ["K8S_PEM"]], issuer=os.environ["K8S_ISSUER"])
config = k8s.read_config()  # hvac returns "data" itself for these three
check(config["kubernetes_host"] == "https://127.0.0.1:1" and len(config["pem_keys"]) == 1, "kubernetes read_config")
k8s.create_role("app", bound_service_account_names=["app"], bound_service_account_namespaces=["team-a"],
                policies=["creds-ro"], ttl="30m", max_ttl="2h", audience="vault")
role = k8s.read_role("app")
check(role["token_policies"] == ["creds-ro"] and role["policies"] == ["creds-ro"], "kubernetes legacy policies")
check(role["token_ttl"] == 1800 and role["ttl"] == 1800 and role["token_max_ttl"] == 7200, "kubernetes legacy ttl")
check(k8s.list_roles()["keys"] == ["app"], "kubernetes list_roles")
pod = hvac.Client(url=ADDR)
resp = pod.auth.kubernetes.login("app", os.environ["K8S_JWT"])
check(pod.is_authenticated() and resp["auth"]["lease_duration"] == 1800, "kubernetes.login")
check(resp["auth"]["metadata"]["service_account_name"] == "app", "kubernetes login metadata")
me = pod.auth.token.lookup_self()["data"]
check(me["display_name"] == "kubernetes-team-a-app" and me["orphan"] is True, "kubernetes token display name")
check(pod.secrets.database.generate_credentials("ro")["data"]["username"], "kubernetes token gets database credentials")
for env, what in [("K8S_JWT_OTHER_NS", "unbound namespace"), ("K8S_JWT_EXPIRED", "expired JWT"),
                  ("K8S_JWT_BAD_SIG", "bad signature"), ("K8S_JWT_WRONG_AUD", "wrong audience")]:
    raises(exceptions.Forbidden, lambda env=env: hvac.Client(url=ADDR).auth.kubernetes.login("app", os.environ[env]), what)
raises(exceptions.InvalidRequest, lambda: hvac.Client(url=ADDR).auth.kubernetes.login("nope", os.environ["K8S_JWT"]), "unknown role")
k8s.delete_role("app")
raises(exceptions.InvalidPath, lambda: k8s.list_roles(), "kubernetes delete_role")

# Userpass, then TOTP.
up = client.auth.userpass
up.create_or_update_user("dba", password="dba-password-42", policies=["creds-ro"])
check(up.read_user("dba")["data"]["token_policies"] == ["creds-ro"], "userpass read_user")
check(up.list_user()["data"]["keys"] == ["dba"], "userpass list_user")
person = hvac.Client(url=ADDR)
resp = person.auth.userpass.login("dba", "dba-password-42")
check(person.is_authenticated() and resp["auth"]["lease_duration"] == 3600, "userpass.login (mount default TTL)")
check(person.auth.token.lookup_self()["data"]["display_name"] == "userpass-dba", "userpass display name")
raises(exceptions.InvalidRequest, lambda: hvac.Client(url=ADDR).auth.userpass.login("dba", "wrong"), "wrong password")
raises(exceptions.InvalidRequest, lambda: hvac.Client(url=ADDR).auth.userpass.login("ghost", "wrong"), "unknown user")

enrolment = client.adapter.post("/v1/auth/userpass/users/dba/totp")["data"]
check(enrolment["url"].startswith("otpauth://totp/") and enrolment["secret"], "TOTP enrolment")
raises(exceptions.InvalidRequest, lambda: hvac.Client(url=ADDR).auth.userpass.login("dba", "dba-password-42"), "TOTP required")
second = hvac.Client(url=ADDR)
second.adapter.login("/v1/auth/userpass/login/dba",
                     json={"password": "dba-password-42", "totp": totp(enrolment["secret"], time.time())})
check(second.is_authenticated(), "login with password and TOTP")
up.update_password_on_user("dba", "dba-password-43")
raises(exceptions.InvalidRequest, lambda: hvac.Client(url=ADDR).adapter.login(
    "/v1/auth/userpass/login/dba", json={"password": "dba-password-42", "totp": totp(enrolment["secret"], time.time() + 30)}),
    "old password after update_password_on_user")
up.delete_user("dba")
raises(exceptions.InvalidPath, lambda: up.read_user("dba"), "userpass delete_user")

client.sys.disable_auth_method("userpass")
check("userpass/" not in client.sys.list_auth_methods()["data"], "disable_auth_method")
print(f"hvac auth methods: all checks passed ({checks} checks)")
