"""Lay this node's Consul ACLs down, then its token files.

Run by the role openssi (python3 -c, its input as JSON on stdin, so that no
secret is on a command line): for the daemons and for the root daemons of
this node, create or update the policy `ssi consul policy` prints (the
installed version's least privilege), create the token with the chosen
SecretID when Consul does not know it, and only then write the token file,
so that a daemon never starts with a token Consul would refuse. It talks to
the local agent's HTTP socket with the management token. Prints one line per
change (nothing: nothing changed); "wrote FILE" for a token file.
"""
import http.client
import json
import os
import socket
import subprocess
import sys

conf = json.load(sys.stdin)


class Agent(http.client.HTTPConnection):
    """HTTP to the Consul agent's unix socket."""

    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.socket_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.socket_path)
        self.sock = s


def api(method, path, token, body=None):
    """One request to the agent: (status, decoded JSON or text)."""
    conn = Agent(conf["socket"])
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"X-Consul-Token": token})
        r = conn.getresponse()
        data = r.read().decode()
    finally:
        conn.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data.strip()


def must(method, path, token, body=None):
    status, data = api(method, path, token, body)
    if status != 200:
        sys.exit("openssi-acl: %s %s: %d %s" % (method, path, status, data))
    return data


mgmt = conf["management_token"]
for t in conf["tokens"]:
    rules = subprocess.run(["ssi", "consul", "policy"] + t["args"], check=True,
                           capture_output=True, text=True).stdout.strip()
    policy = {"Name": t["policy"], "Description": conf["description"], "Rules": rules}
    status, current = api("GET", "/v1/acl/policy/name/" + t["policy"], mgmt)
    if status == 200 and isinstance(current, dict):
        if (current.get("Rules") or "").strip() != rules or current.get("Description") != conf["description"]:
            must("PUT", "/v1/acl/policy/" + current["ID"], mgmt, dict(policy, ID=current["ID"]))
            print("updated the policy " + t["policy"])
    elif status in (403, 404):  # Consul answers a missing name with either
        must("PUT", "/v1/acl/policy", mgmt, policy)
        print("created the policy " + t["policy"])
    else:
        sys.exit("openssi-acl: reading the policy %s: %d %s" % (t["policy"], status, current))

    status, _ = api("GET", "/v1/acl/token/self", t["secret"])
    if status == 403:
        must("PUT", "/v1/acl/token", mgmt, {
            "SecretID": t["secret"],
            "Description": t["description"],
            "Policies": [{"Name": t["policy"]}],
        })
        print("created the token of the policy " + t["policy"])
    elif status != 200:
        sys.exit("openssi-acl: reading the token of %s: %d" % (t["policy"], status))

    want = t["secret"] + "\n"
    try:
        with open(t["file"]) as f:
            have = f.read()
        mode = os.stat(t["file"]).st_mode & 0o7777
    except FileNotFoundError:
        have, mode = None, None
    if have != want or mode != 0o600:
        tmp = t["file"] + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(want)
        os.chmod(tmp, 0o600)
        os.chown(tmp, 0, 0)
        os.replace(tmp, t["file"])
        print("wrote " + t["file"])
