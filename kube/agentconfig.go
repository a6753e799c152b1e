package kube

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/config"
)

// What the agent reads from the API server besides Services: the
// ConfigMap once at start, the Secrets it names, the Nodes' addresses for
// the layer2 membership.

// ConfigMapName names the ConfigMap in messages: NAMESPACE/NAME.
func (c *Controller) ConfigMapName() string {
	return c.opts.Namespace + "/" + c.opts.ConfigMapName
}

// ConfigKeyName names a key of the ConfigMap in messages:
// NAMESPACE/NAME/KEY.
func (c *Controller) ConfigKeyName(key string) string {
	return c.ConfigMapName() + "/" + key
}

// ReadConfigMap reads the ConfigMap once, before anything runs: its
// vipspeaker.toml and gobgp.conf (nil when a key is absent); found is false
// when there is no ConfigMap.
func (c *Controller) ReadConfigMap(ctx context.Context) (vipspeakerTOML, gobgpConf []byte, found bool, err error) {
	cm, err := c.cs.CoreV1().ConfigMaps(c.opts.Namespace).Get(ctx, c.opts.ConfigMapName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil, false, nil
	case err != nil:
		return nil, nil, false, err
	}
	if v, ok := cm.Data[config.FileName]; ok {
		vipspeakerTOML = []byte(v)
	}
	if v, ok := cm.Data[GoBGPConfKey]; ok {
		gobgpConf = []byte(v)
	}
	return vipspeakerTOML, gobgpConf, true, nil
}

// MembershipKey reads the Secret [membership] secret-file names, when it is
// a reference (nil otherwise), and derives the membership key from it as
// owner.LoadKey does from a file (SHA-256 of the value without surrounding
// white space), so a mounted Secret and a referenced one give the same key.
func (c *Controller) MembershipKey(ctx context.Context, ref config.SecretRef) ([]byte, error) {
	if ref.IsZero() {
		return nil, nil
	}
	field := c.ConfigKeyName(config.FileName) + ": membership.secret-file: " + ref.String()
	v, err := c.SecretValue(ctx, ref.Name, ref.Key)
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

// SecretText is SecretValue as text without a trailing line end: the value
// of a gobgp.conf auth-password = "secret:NAME/KEY".
func (c *Controller) SecretText(ctx context.Context, name, key string) (string, error) {
	v, err := c.SecretValue(ctx, name, key)
	if err != nil {
		return "", err
	}
	return string(bytes.TrimRight(v, "\r\n")), nil
}

// NodeAddrs lists every Node's InternalIP addresses (Node name to
// addresses) once, as Options.OnNodeAddrs later receives them.
func (c *Controller) NodeAddrs(ctx context.Context) (map[string][]string, error) {
	l, err := c.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	addrs := map[string][]string{}
	for i := range l.Items {
		n := &l.Items[i]
		for _, ad := range n.Status.Addresses {
			if ad.Type == "InternalIP" {
				addrs[n.Name] = append(addrs[n.Name], ad.Address)
			}
		}
	}
	return addrs, nil
}

// JoinPeers picks from Node addresses, per Node other than self, its first
// address of the family (IPv6 when v6); sorted. In a cluster the layer2
// membership joins these.
func JoinPeers(addrs map[string][]string, self string, v6 bool) []string {
	var out []string
	for name, as := range addrs {
		if name == self {
			continue
		}
		for _, s := range as {
			ip, err := netip.ParseAddr(s)
			if err != nil || ip.Unmap().Is6() != v6 {
				continue
			}
			out = append(out, ip.Unmap().String())
			break
		}
	}
	slices.Sort(out)
	return out
}
