package config

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// SecretRefPrefix starts a reference to one key of a Kubernetes Secret in
// the agent's own namespace: "secret:NAME/KEY". In cluster mode it is
// accepted where a secret file path is ([membership] secret-file, and
// gobgp.conf's auth-password); the agent reads the Secret through the API
// server and follows its changes. Offline (vipspeaker check) and in
// standalone mode it cannot be resolved.
const SecretRefPrefix = "secret:"

// SecretRef names a key of a Secret in the agent's namespace.
type SecretRef struct {
	Name string
	Key  string
}

func (r SecretRef) String() string { return SecretRefPrefix + r.Name + "/" + r.Key }

// IsZero reports whether r names nothing.
func (r SecretRef) IsZero() bool { return r == SecretRef{} }

// ParseSecretRef reads s as a secret:NAME/KEY reference. ok is false when s
// does not start with "secret:" (a path or a literal); err says what is
// wrong with a reference that does.
func ParseSecretRef(s string) (ref SecretRef, ok bool, err error) {
	rest, ok := strings.CutPrefix(s, SecretRefPrefix)
	if !ok {
		return SecretRef{}, false, nil
	}
	name, key, found := strings.Cut(rest, "/")
	if !found {
		return SecretRef{}, true, fmt.Errorf("%q: want secret:NAME/KEY (a Secret in the agent's namespace and one of its keys)", s)
	}
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return SecretRef{}, true, fmt.Errorf("%q: %q is not a Secret name: %s", s, name, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsConfigMapKey(key); len(msgs) > 0 {
		return SecretRef{}, true, fmt.Errorf("%q: %q is not a Secret key: %s", s, key, strings.Join(msgs, "; "))
	}
	return SecretRef{Name: name, Key: key}, true, nil
}
