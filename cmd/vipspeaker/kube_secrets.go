package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"

	"github.com/vipspeaker/vipspeaker/bgp"
	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/kube"
)

// Secrets named by the ConfigMap: secret:NAME/KEY is accepted, in cluster
// mode, where a secret file path is — [membership] secret-file in
// vipspeaker.toml and auth-password in gobgp.conf. Only Secrets of the
// agent's own namespace are read (the controller watches each named one
// through a field selector; the RBAC is a Role there). A change to such a
// Secret runs the ConfigMap again: a BGP password takes effect at once (the
// session is reset with the new one), the membership key at the next
// restart. A Secret or key that cannot be read refuses the ConfigMap (the
// last good configuration stays; InvalidConfig Event on the ConfigMap), the
// message naming the field and the Secret. Values never reach a log.

// membershipKey reads the Secret [membership] secret-file names, when it is
// a reference, and derives the membership key from it as owner.LoadKey does
// from a file (SHA-256 of the value without surrounding white space), so a
// mounted Secret and a referenced one give the same key.
func (a *agent) membershipKey(ctx context.Context, c *config.Config) ([]byte, error) {
	ref := c.Membership.SecretRef
	if ref.IsZero() {
		return nil, nil
	}
	field := a.configMapName(config.FileName) + ": membership.secret-file: " + ref.String()
	v, err := a.cluster.ctrl.SecretValue(ctx, ref.Name, ref.Key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	t := bytes.TrimSpace(v)
	if len(t) < 16 {
		return nil, fmt.Errorf("%s: the membership secret must hold at least 16 bytes, it has %d", field, len(t))
	}
	sum := sha256.Sum256(t)
	return sum[:], nil
}

// resolveBGPSecrets replaces gobgp.conf's auth-password = "secret:NAME/KEY"
// with the Secrets' values (lines keep their numbers).
func (a *agent) resolveBGPSecrets(ctx context.Context, gobgpConf []byte) ([]byte, []error) {
	return bgp.ResolvePasswordRefs(a.configMapName(kube.GoBGPConfKey), gobgpConf, func(name, key string) (string, error) {
		v, err := a.cluster.ctrl.SecretValue(ctx, name, key)
		if err != nil {
			return "", err
		}
		return string(bytes.TrimRight(v, "\r\n")), nil
	})
}
