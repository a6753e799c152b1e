package standalone

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vipspeaker/vipspeaker/routing"
)

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// vip builds an expected VIP; attrs are mode, then communities (std
// "a:b", large "a:b:c").
func vip(addr, service string, mode routing.Mode, comms ...string) routing.VIP {
	v := routing.VIP{Addr: netip.MustParseAddr(addr), Attrs: routing.Attrs{Service: service, Mode: mode}}
	for _, c := range comms {
		if len(splitColon(c)) == 3 {
			v.Attrs.LargeCommunities = append(v.Attrs.LargeCommunities, c)
		} else {
			v.Attrs.Communities = append(v.Attrs.Communities, c)
		}
	}
	return v
}

func splitColon(s string) []string {
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == ':' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func newSource(t *testing.T, dir string) *Source {
	t.Helper()
	s, err := New(Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func errStrings(errs []error) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

// relErrors drops the directory from error texts so wants stay readable.
func relErrors(dir string, errs []error) []string {
	var out []string
	for _, e := range errs {
		var se *Error
		if errors.As(e, &se) {
			c := *se
			if rel, err := filepath.Rel(dir, c.File); err == nil {
				c.File = rel
			}
			out = append(out, c.Error())
			continue
		}
		out = append(out, e.Error())
	}
	return out
}

const svcWeb = `apiVersion: v1
kind: Service
metadata:
  name: web
  annotations:
    vipspeaker.io/addresses: "203.0.113.10"
spec:
  type: LoadBalancer
`

func TestLoad(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []routing.VIP
		errs  []string
	}{
		{
			name: "multi-document file, other kinds and types skipped",
			files: map[string]string{"all.yaml": `# several objects
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata:
  name: cart
  namespace: shop
  annotations:
    vipspeaker.io/addresses: "203.0.113.20,2001:db8:100::20"
    vipspeaker.io/mode: layer2
spec:
  type: LoadBalancer
---
apiVersion: v1
kind: Service
metadata: {name: internal}
spec: {type: ClusterIP}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart}
---
apiVersion: v1
kind: Service
metadata: {name: other-lb}
spec:
  type: LoadBalancer
  loadBalancerClass: example.com/other
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.99}]
`,
				"status.yml": `apiVersion: v1
kind: Service
metadata: {name: assigned, namespace: web}
spec: {type: LoadBalancer, loadBalancerClass: vipspeaker.io/lb}
status:
  loadBalancer:
    ingress:
    - hostname: lb.example
    - ip: 198.51.100.7
    - ip: 2001:db8:100::7
`,
				"list.json": `{"apiVersion": "v1", "kind": "List", "items": [
 {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "l"},
  "spec": {"type": "LoadBalancer", "loadBalancerIP": "198.51.100.8"}},
 {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
]}`,
				"notes.txt":    "not a manifest",
				".hidden.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: hidden}\nspec: {type: LoadBalancer, loadBalancerIP: 198.51.100.66}\n",
			},
			want: []routing.VIP{
				vip("198.51.100.7", "web/assigned", ""),
				vip("198.51.100.8", "l/a", ""),
				vip("203.0.113.20", "shop/cart", routing.ModeLayer2),
				vip("2001:db8:100::7", "web/assigned", ""),
				vip("2001:db8:100::20", "shop/cart", routing.ModeLayer2),
			},
		},
		{
			name: "address sources in order of precedence",
			files: map[string]string{"p.yaml": `apiVersion: v1
kind: Service
metadata:
  name: own
  annotations:
    vipspeaker.io/addresses: "203.0.113.1"
    metallb.io/loadBalancerIPs: "203.0.113.2"
spec: {type: LoadBalancer, loadBalancerIP: 203.0.113.3}
status: {loadBalancer: {ingress: [{ip: 203.0.113.4}]}}
---
apiVersion: v1
kind: Service
metadata:
  name: metallb
  annotations:
    metallb.io/loadBalancerIPs: "203.0.113.5, 203.0.113.6"
    eip.openelb.kubesphere.io/v1alpha1: "203.0.113.7"
spec: {type: LoadBalancer}
---
apiVersion: v1
kind: Service
metadata:
  name: openelb
  annotations:
    lb.kubesphere.io/v1alpha1: openelb
    eip.openelb.kubesphere.io/v1alpha1: "203.0.113.8"
    protocol.openelb.kubesphere.io/v1alpha1: layer2
spec: {type: LoadBalancer, loadBalancerIP: 203.0.113.9}
---
apiVersion: v1
kind: Service
metadata:
  name: empty-annotation
  annotations:
    vipspeaker.io/addresses: ""
    vipspeaker.io/mode: ""
spec: {type: LoadBalancer}
status: {loadBalancer: {ingress: [{ip: 203.0.113.12}]}}
---
apiVersion: v1
kind: Service
metadata:
  name: mode-precedence
  annotations:
    vipspeaker.io/addresses: "203.0.113.13"
    vipspeaker.io/mode: bgp
    protocol.openelb.kubesphere.io/v1alpha1: layer2
spec: {type: LoadBalancer}
`},
			want: []routing.VIP{
				vip("203.0.113.1", "default/own", ""),
				vip("203.0.113.5", "default/metallb", ""),
				vip("203.0.113.6", "default/metallb", ""),
				vip("203.0.113.8", "default/openelb", routing.ModeLayer2),
				vip("203.0.113.12", "default/empty-annotation", ""),
				vip("203.0.113.13", "default/mode-precedence", routing.ModeBGP),
			},
		},
		{
			name: "shared VIP: services listed, communities merged",
			files: map[string]string{
				"a.yaml": `apiVersion: v1
kind: Service
metadata:
  name: https
  namespace: web
  annotations:
    vipspeaker.io/addresses: "203.0.113.10, 203.0.113.10"
    vipspeaker.io/communities: "65000:200,65000:100,large:65000:1:2"
spec: {type: LoadBalancer}
`,
				"b.yaml": `apiVersion: v1
kind: Service
metadata:
  name: http
  namespace: web
  annotations:
    vipspeaker.io/addresses: "203.0.113.10,203.0.113.11"
    vipspeaker.io/communities: "65000:100,no-export"
spec: {type: LoadBalancer}
`,
			},
			want: []routing.VIP{
				vip("203.0.113.10", "web/http,web/https", "", "65000:100", "65000:200", "65535:65281", "65000:1:2"),
				vip("203.0.113.11", "web/http", "", "65000:100", "65535:65281"),
			},
		},
		{
			name: "shared VIP with conflicting modes",
			files: map[string]string{"c.yaml": `apiVersion: v1
kind: Service
metadata:
  name: b
  annotations: {vipspeaker.io/addresses: "203.0.113.10", vipspeaker.io/mode: layer2}
spec: {type: LoadBalancer}
---
apiVersion: v1
kind: Service
metadata:
  name: a
  annotations: {vipspeaker.io/addresses: "203.0.113.10"}
spec: {type: LoadBalancer}
`},
			want: []routing.VIP{vip("203.0.113.10", "default/a,default/b", "")},
			errs: []string{`c.yaml: service default/b: metadata.annotations["vipspeaker.io/mode"]: shares 203.0.113.10 with default/a but asks for mode "layer2", not "default"; default/a's mode is used`},
		},
		{
			name: "bad addresses skipped, good ones apply",
			files: map[string]string{"bad.yaml": svcWeb + `---
apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: shop
  annotations:
    vipspeaker.io/addresses: >-
      203.0.113.30, 203.0.113.300, 0.0.0.0, ::1,
      224.0.0.5, fe80::5, 203.0.113.31/32, 2001:db8:100::30
spec: {type: LoadBalancer}
---
apiVersion: v1
kind: Service
metadata: {name: st}
spec: {type: LoadBalancer}
status:
  loadBalancer:
    ingress:
    - ip: 198.51.100.1
    - ip: 127.0.0.1
`},
			want: []routing.VIP{
				vip("198.51.100.1", "default/st", ""),
				vip("203.0.113.10", "default/web", ""),
				vip("203.0.113.30", "shop/api", ""),
				vip("2001:db8:100::30", "shop/api", ""),
			},
			errs: []string{
				`bad.yaml:17: document 2 (from line 10): service shop/api: metadata.annotations["vipspeaker.io/addresses"]: "203.0.113.300" is not an IP address`,
				`bad.yaml:17: document 2 (from line 10): service shop/api: metadata.annotations["vipspeaker.io/addresses"]: "0.0.0.0" is the unspecified address, not a unicast VIP`,
				`bad.yaml:17: document 2 (from line 10): service shop/api: metadata.annotations["vipspeaker.io/addresses"]: "::1" is a loopback address, not a unicast VIP`,
				`bad.yaml:18: document 2 (from line 10): service shop/api: metadata.annotations["vipspeaker.io/addresses"]: "224.0.0.5" is a multicast address, not a unicast VIP`,
				`bad.yaml:18: document 2 (from line 10): service shop/api: metadata.annotations["vipspeaker.io/addresses"]: "fe80::5" is a link-local address, not a unicast VIP`,
				`bad.yaml:18: document 2 (from line 10): service shop/api: metadata.annotations["vipspeaker.io/addresses"]: "203.0.113.31/32" is a prefix, not an address`,
				`bad.yaml:29: document 3 (from line 21): service default/st: status.loadBalancer.ingress[1].ip: "127.0.0.1" is a loopback address, not a unicast VIP`,
			},
		},
		{
			name: "bad mode or community: service not applied",
			files: map[string]string{"attrs.yaml": svcWeb + `---
apiVersion: v1
kind: Service
metadata:
  name: m
  annotations:
    vipspeaker.io/addresses: "203.0.113.40"
    vipspeaker.io/mode: vip
spec: {type: LoadBalancer}
---
apiVersion: v1
kind: Service
metadata:
  name: c
  annotations:
    vipspeaker.io/addresses: "203.0.113.41"
    vipspeaker.io/communities: "65000:100,70000:1"
spec: {type: LoadBalancer}
`},
			want: []routing.VIP{vip("203.0.113.10", "default/web", "")},
			errs: []string{
				`attrs.yaml:16: document 2 (from line 10): service default/m: metadata.annotations["vipspeaker.io/mode"]: "vip" is not a mode (bgp or layer2)`,
				`attrs.yaml:25: document 3 (from line 19): service default/c: metadata.annotations["vipspeaker.io/communities"]: "70000:1": "70000" is not a number in 0..65535`,
			},
		},
		{
			name: "malformed documents skipped, the rest applies",
			files: map[string]string{"m.yaml": svcWeb + `---
apiVersion: v1
kind: Service
metadata:
  name: broken
  annotations:
    vipspeaker.io/addresses: "203.0.113.50"
   bad-indent: x
spec: {type: LoadBalancer}
---
apiVersion: v1
kind: Service
metadata: {name: wrongtype}
spec: "LoadBalancer"
---
metadata: {name: nokind}
---
apiVersion: v1
kind: Service
metadata: {namespace: x}
spec: {type: LoadBalancer}
---
- just
- a list
---
apiVersion: v1
kind: Service
metadata: {name: last}
spec: {type: LoadBalancer, loadBalancerIP: 203.0.113.51}
`},
			want: []routing.VIP{
				vip("203.0.113.10", "default/web", ""),
				vip("203.0.113.51", "default/last", ""),
			},
			errs: []string{
				`m.yaml:15: document 2 (from line 10): malformed YAML: yaml: line 15: did not find expected key`,
				`m.yaml:19: document 3: malformed Service: cannot unmarshal string into Go struct field Service.spec of type v1.ServiceSpec`,
				`m.yaml:24: document 4: not a Kubernetes object: apiVersion or kind is missing`,
				`m.yaml:26: document 5: metadata.name: a Service needs a name`,
				`m.yaml:31: document 6: not a Kubernetes object (expected a mapping with apiVersion and kind)`,
			},
		},
		{
			name: "duplicate service",
			files: map[string]string{
				"1.yaml": svcWeb,
				"2.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {type: LoadBalancer, loadBalancerIP: 203.0.113.60}\n",
			},
			want: []routing.VIP{vip("203.0.113.10", "default/web", "")},
			errs: []string{`2.yaml: service default/web: service is also defined in ` + "DIR/1.yaml" + `; that one is used`},
		},
		{
			name:  "unreadable file",
			files: map[string]string{"ok.yaml": svcWeb},
			want:  []routing.VIP{vip("203.0.113.10", "default/web", "")},
			errs:  []string{`dangling.yaml: read: no such file or directory`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			if tc.name == "unreadable file" {
				if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling.yaml")); err != nil {
					t.Fatal(err)
				}
			}
			got, errs := newSource(t, dir).Load()
			if diff := cmp.Diff(tc.want, got, addrCmp); diff != "" {
				t.Errorf("VIPs (-want +got):\n%s", diff)
			}
			var wantErrs []string
			for _, e := range tc.errs {
				wantErrs = append(wantErrs, replaceDir(e, dir))
			}
			if diff := cmp.Diff(wantErrs, relErrors(dir, errs)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func replaceDir(s, dir string) string {
	const tok = "DIR"
	for i := 0; i+len(tok) <= len(s); i++ {
		if s[i:i+len(tok)] == tok {
			return s[:i] + dir + s[i+len(tok):]
		}
	}
	return s
}
