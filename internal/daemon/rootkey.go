package daemon

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/rootkey"
	"github.com/openssi/openssi/internal/rpc"
)

// ConnectRoot is [Env.Connect] for a daemon that runs as root (vprocd,
// initfailover): its peers must not believe a Connect certificate, which
// user openssi can fetch from the agent, so it takes from cluster.tls only
// its SPIFFE ID (trust domain and identity), makes its own key
// (rpc.PinnedSource) and publishes the key's pin at
// openssi/rootkeys/<node>/<service> with the node's root token
// (cluster.consul.root_token_file) before it returns. The source it
// returns accepts only peers whose keys are pinned the same way.
func (e *Env) ConnectRoot(ctx context.Context) (*api.Client, rpc.Source, error) {
	client, base, err := e.Connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	service := rpc.ServiceName(e.Name)
	id, err := spiffeIDOf(base, service)
	// The Connect leaf is no longer needed: stop renewing it.
	_ = base.Close()
	if err != nil {
		return nil, nil, err
	}
	root, missing, err := e.rootConsul()
	if err != nil {
		return nil, nil, err
	}
	kv := consul.NewKV(client)
	src, err := rpc.NewPinnedSource(rpc.PinnedConfig{ID: id, Fetch: fetchPin(kv), List: listPins(kv, e.Log), Log: e.Log})
	if err != nil {
		return nil, nil, err
	}
	_ = e.Notify.Status("publishing this daemon's peer key at openssi/%s", src.Key())
	if err := e.publishPin(ctx, consul.NewKV(root), src, missing); err != nil {
		_ = src.Close()
		return nil, nil, err
	}
	e.Log.WithFields(logrus.Fields{"key": "openssi/" + src.Key(), "pin": src.Pin().String()}).Info("published this daemon's peer key")
	return client, src, nil
}

// spiffeIDOf returns the SPIFFE ID of service in the certificate src
// presents.
func spiffeIDOf(src rpc.Source, service string) (rpc.SPIFFEID, error) {
	l, ok := src.(interface{ Leaf() *x509.Certificate })
	if !ok || l.Leaf() == nil {
		return rpc.SPIFFEID{}, fmt.Errorf("inter-node TLS: no certificate to take this daemon's identity from")
	}
	for _, u := range l.Leaf().URIs {
		id, err := rpc.ParseSPIFFEID(u.String())
		if err != nil {
			continue
		}
		if ident, ok := id.Identity(); ok && ident.Service == service {
			return id, nil
		}
	}
	return rpc.SPIFFEID{}, fmt.Errorf("inter-node TLS: the certificate (URIs %v) names no %s.<node> identity", l.Leaf().URIs, service)
}

// fetchPin reads a pin from Consul KV (key without "openssi/").
func fetchPin(kv *consul.KV) func(context.Context, string) (rootkey.Pin, bool, error) {
	return func(ctx context.Context, key string) (rootkey.Pin, bool, error) {
		var raw json.RawMessage
		_, found, err := kv.Get(ctx, key, &raw)
		if err != nil || !found {
			return rootkey.Pin{}, false, err
		}
		pin, err := rootkey.Decode(raw)
		if err != nil {
			return rootkey.Pin{}, false, err
		}
		return pin, true, nil
	}
}

// listPins is a blocking query of every pin under openssi/rootkeys/, for
// rpc.PinnedSource's watch. A value that is not a pin is left out (no key
// is believed on it) and logged.
func listPins(kv *consul.KV, log logrus.FieldLogger) func(context.Context, uint64) (map[string]rootkey.Pin, uint64, error) {
	return func(ctx context.Context, wait uint64) (map[string]rootkey.Pin, uint64, error) {
		entries, index, err := kv.List(ctx, rootkey.Prefix, consul.Wait{Index: wait})
		if err != nil {
			return nil, 0, err
		}
		pins := make(map[string]rootkey.Pin, len(entries))
		for _, e := range entries {
			pin, err := rootkey.Decode(e.Value)
			if err != nil {
				log.WithError(err).WithField("key", "openssi/"+e.Key).Warn("ignoring a root key pin that cannot be read")
				continue
			}
			pins[e.Key] = pin
		}
		return pins, index, nil
	}
}

// rootConsul returns a client of the local agent with the node's root
// token from cluster.consul.root_token_file, or with the daemons' token
// when there is no such file (Consul refuses the write then when its ACLs
// are on); missing is then the file's path, for the error.
func (e *Env) rootConsul() (client *api.Client, missing string, err error) {
	o := e.consulOptions(os.Getenv("CREDENTIALS_DIRECTORY"))
	file := e.Config.Cluster.Consul.RootTokenFile
	if file == "" {
		e.Log.Warn("no root token (cluster.consul.root_token_file is empty): publishing this daemon's peer key with the daemons' token")
		client, err = consul.NewClient(o)
		return client, "", err
	}
	b, err := os.ReadFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		e.Log.WithField("root_token_file", file).Warn("no root token file: publishing this daemon's peer key with the daemons' token (Consul refuses it when its ACLs are on)")
		client, err = consul.NewClient(o)
		return client, file, err
	case err != nil:
		return nil, "", ConfigError{fmt.Errorf("config: cluster.consul.root_token_file: %w", err)}
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, "", ConfigError{fmt.Errorf("config: cluster.consul.root_token_file: %s is empty", file)}
	}
	e.Log.Info("Consul root token from cluster.consul.root_token_file")
	o.CredentialsDir, o.TokenFile, o.Token = "", "", tok
	client, err = consul.NewClient(o)
	return client, "", err
}

// publishPin writes src's pin, retrying while Consul is not there yet; a
// refusal by the ACLs ends the start with what to do: create the root
// token file when it is missing (its path), else give its token the
// policy.
func (e *Env) publishPin(ctx context.Context, kv *consul.KV, src *rpc.PinnedSource, missing string) error {
	err := e.Retry(ctx, 100*time.Millisecond, 2*time.Second, func() error {
		err := kv.Put(ctx, src.Key(), json.RawMessage(rootkey.Encode(src.Pin())))
		if denied(err) && missing != "" {
			return Permanent{fmt.Errorf("no root token file %s: create it with `ssi consul policy --root %s` (see packaging/README.md)", missing, src.Identity().Node)}
		}
		if denied(err) {
			return Permanent{fmt.Errorf("publishing this daemon's peer key at openssi/%s: %w (the node's root token, cluster.consul.root_token_file, needs the policy `ssi consul policy --root %s` prints)", src.Key(), err, src.Identity().Node)}
		}
		if err != nil && ctx.Err() == nil {
			e.Log.WithError(err).Info("waiting for Consul to publish this daemon's peer key")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("publish peer key: %w", err)
	}
	return nil
}

// denied reports whether err is Consul's refusal by its ACLs.
func denied(err error) bool {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code == http.StatusForbidden
	}
	return err != nil && strings.Contains(err.Error(), "Permission denied")
}
