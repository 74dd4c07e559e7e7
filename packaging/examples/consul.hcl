# Consul agent configuration for an OpenSSI node, locked down: ACLs deny by
# default, gossip is encrypted, the servers' RPC takes TLS only, and the HTTP
# API is a Unix socket only root and the OpenSSI daemons' user can open.
# Copy it to /etc/consul.d/consul.hcl (root:root, mode 0600: it holds
# secrets), fill in the <...> values, and keep what applies to a server or to
# a client. The OpenSSI lab (package lab of the source) writes exactly this,
# with its own secrets.
#
# Once, for the cluster:
#   consul keygen                    -> the gossip key, the same on every node
#   consul tls ca create             -> consul-agent-ca.pem, consul-agent-ca-key.pem
#   consul tls cert create -server -dc <datacenter>   (on the CA's machine, once
#                                       per server) -> <dc>-server-consul-N.pem/-key.pem
#   uuidgen                          -> the initial management token (servers)
#
# Then, for each node (NAME is its node_name, N its clmsd.node_number), with
# the management token in CONSUL_HTTP_TOKEN:
#   ssi consul policy NAME N > NAME.hcl
#   consul acl policy create -name openssi-node-NAME -rules @NAME.hcl
#   consul acl token create -description "OpenSSI daemons of NAME" \
#       -policy-name openssi-node-NAME               # its SecretID goes to
#                                                    # /etc/openssi/consul.token
#   ssi consul policy --root NAME > NAME-root.hcl
#   consul acl policy create -name openssi-root-NAME -rules @NAME-root.hcl
#   consul acl token create -description "OpenSSI root daemons of NAME" \
#       -policy-name openssi-root-NAME               # its SecretID goes to
#                                                    # /etc/openssi/consul-root.token
#   consul acl token create -description "Consul agent of NAME" \
#       -node-identity NAME:<datacenter>             # its SecretID goes to
#                                                    # acl.tokens.agent below
# and on the node:
#   install -m 0600 -o root -g root /dev/null /etc/openssi/consul.token
#   echo <daemons' SecretID> > /etc/openssi/consul.token
#   install -m 0600 -o root -g root /dev/null /etc/openssi/consul-root.token
#   echo <root SecretID> > /etc/openssi/consul-root.token
# The root token is read only by vprocd and initfailover (root), to publish
# the keys their peers believe them on; user openssi, which can open this
# agent's socket and so fetch any Connect certificate of the node, must never
# get it.
# with, in /etc/openssi/openssi.yaml:
#   cluster:
#     consul:
#       address: unix:///run/consul/http.sock
#       token_file: /etc/openssi/consul.token
#   clmsd:
#     node_number: N
# (See packaging/README.md, "Consul", in the source.)

node_name  = "<node name: letters, digits, '-'>"
datacenter = "<datacenter>"
data_dir   = "/opt/consul"
bind_addr  = "<this node's cluster address>"
retry_join = ["<server 1 address>", "<server 2 address>", "<server 3 address>"]

# The HTTP API on a Unix socket only root and the OpenSSI daemons' user can
# open. Not on a TCP port: Consul serves a Connect leaf certificate its agent
# has cached, private key included, to any caller whatever its ACL token, so
# a port on 127.0.0.1 would give every local user this node's identity. The
# socket's directory must exist (systemd: RuntimeDirectory=consul in the
# consul unit). Root's consul command: CONSUL_HTTP_ADDR=unix:///run/consul/http.sock.
addresses {
  http = "unix:///run/consul/http.sock"
}
unix_sockets {
  # The owner: the system user clmsd and dlmd run as, which the openssi
  # package creates (Consul fails to start when the user does not exist
  # yet: install openssi first, or create it with `systemd-sysusers`).
  # vprocd and initfailover run as root and reach the socket as root
  # (initfailover through its one capability, CAP_DAC_OVERRIDE). Whoever
  # opens the socket can fetch any Connect certificate the agent cached, so
  # vprocd and initfailover are not believed on theirs: their peers check
  # keys pinned with the node's root token (/etc/openssi/consul-root.token).
  user  = "openssi"
  group = "0"
  mode  = "0600"
}
ports {
  dns  = -1
  grpc = -1
}

# Gossip encryption: `consul keygen`, the same key on every node.
encrypt                 = "<gossip key>"
encrypt_verify_incoming = true
encrypt_verify_outgoing = true

# ACLs: nothing without a token. down_policy extend-cache keeps a node cut
# off from the servers applying the policies it has cached.
acl {
  enabled                  = true
  default_policy           = "deny"
  down_policy              = "extend-cache"
  enable_token_persistence = false
  tokens {
    # This agent's own token: a node identity for this node only.
    agent = "<agent token SecretID>"
    # Servers only: the initial management token.
    # initial_management = "<management token>"
  }
}

# --- On a server ---
# server           = true
# bootstrap_expect = 3
# connect {
#   enabled = true     # OpenSSI's daemons take their peer certificates from Connect
# }
# tls {
#   defaults {
#     ca_file         = "/etc/consul.d/tls/consul-agent-ca.pem"
#     cert_file       = "/etc/consul.d/tls/<dc>-server-consul-N.pem"
#     key_file        = "/etc/consul.d/tls/<dc>-server-consul-N-key.pem"   # mode 0600
#     verify_outgoing = true
#   }
#   internal_rpc {
#     verify_incoming        = true
#     verify_server_hostname = true
#   }
# }
# auto_encrypt {
#   allow_tls = true   # clients get their certificates from the servers
# }

# --- On a client ---
# tls {
#   defaults {
#     ca_file         = "/etc/consul.d/tls/consul-agent-ca.pem"
#     verify_outgoing = true
#   }
#   internal_rpc {
#     verify_server_hostname = true
#   }
# }
# auto_encrypt {
#   tls = true
# }
