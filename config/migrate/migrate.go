package migrate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	sigyaml "sigs.k8s.io/yaml"

	"github.com/vipspeaker/vipspeaker/bgp"
	"github.com/vipspeaker/vipspeaker/config"
)

// Result is the converted configuration: the two keys of the
// vipspeaker-config ConfigMap, and one note for each thing the source
// said that this configuration does not carry (or carries differently).
type Result struct {
	TOML  string
	GoBGP string // empty: the source has no BGP peers
	Notes []string
}

// Convert reads YAML documents (MetalLB's metallb.io resources, OpenELB's
// network.kubesphere.io ones; other documents are passed over with a note)
// and returns the equivalent configuration. The result is checked with
// the agent's own validation; an error means the input could not be read,
// or the conversion made something the agent refuses (a bug, or input the
// other project would refuse too), with the reasons.
func Convert(r io.Reader) (*Result, error) {
	c := &converter{}
	dec := yaml.NewDecoder(r)
	for i := 1; ; i++ {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		raw, err := yaml.Marshal(&node)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name        string            `json:"name"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		if err := sigyaml.Unmarshal(raw, &head); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if head.Kind == "" {
			continue // an empty document
		}
		group, _, _ := strings.Cut(head.APIVersion, "/")
		c.docs = append(c.docs, doc{group: group, kind: head.Kind, name: head.Metadata.Name, labels: head.Metadata.Labels,
			annotations: head.Metadata.Annotations, raw: raw})
	}
	for _, d := range c.docs {
		if d.group != "metallb.io" && d.group != "network.kubesphere.io" {
			c.note(d, "not a MetalLB or OpenELB resource: passed over")
		}
	}
	c.metallb()
	c.openelb()
	res := &Result{TOML: c.toml(), GoBGP: c.gobgp(), Notes: c.notes}
	if errs := check(res); len(errs) > 0 {
		return res, fmt.Errorf("the converted configuration does not pass vipspeaker check:\n%w", errors.Join(errs...))
	}
	return res, nil
}

// check validates res as the agent does.
func check(res *Result) []error {
	cfg, errs := config.Parse(config.FileName, []byte(res.TOML))
	if len(errs) > 0 {
		return errs
	}
	if res.GoBGP != "" {
		if errs := bgp.Validate(config.GoBGPFileName, []byte(res.GoBGP)); len(errs) > 0 {
			return errs
		}
	}
	return config.CheckWithGoBGP(config.FileName, []byte(res.TOML), cfg, config.GoBGPFileName, []byte(res.GoBGP))
}

// ConfigMap is res as the vipspeaker-config ConfigMap in namespace.
func (res *Result) ConfigMap(namespace string) (string, error) {
	data := map[string]string{config.FileName: res.TOML}
	if res.GoBGP != "" {
		data[config.GoBGPFileName] = res.GoBGP
	}
	b, err := sigyaml.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "vipspeaker-config", "namespace": namespace},
		"data":     data,
	})
	return string(b), err
}

// doc is one input document.
type doc struct {
	group, kind, name   string
	labels, annotations map[string]string
	raw                 []byte
}

func (d doc) ref() string { return d.kind + "/" + d.name }

// pool is a pool being built.
type pool struct {
	name, mode                 string
	addresses                  []string
	autoAssign, avoidBuggy     bool
	namespaces, interfaces     []string
	labels                     map[string]string
	nodeSelector               string
	serviceSelector            string
	namespaceSelector          string
	priority                   int
	communities                []string
	localPref                  uint32
	aggregation, aggregationV6 int
	advertisedBy               string
	// peers: the neighbors the pool goes to, unless allPeers (some
	// advertisement of it names none)
	peers    []string
	allPeers bool
}

// neighbor is a gobgp.conf neighbor being built.
type neighbor struct {
	address, source, password, nodeSelector, from string
	peerAS, localAS                               uint32
	port                                          uint16
	hold, keepalive, connectRetry                 float64
	multihop, gracefulRestart, bfd                bool
	bfdRx, bfdTx, bfdMult                         uint32
}

type converter struct {
	docs      []doc
	pools     []*pool
	neighbors []neighbor
	globalAS  uint32
	// defaultClass: the input has MetalLB resources, and MetalLB takes
	// the Services without a class.
	defaultClass bool
	notes        []string
}

func (c *converter) of(group, kind string) []doc {
	var out []doc
	for _, d := range c.docs {
		if d.group == group && d.kind == kind {
			out = append(out, d)
		}
	}
	return out
}

// spec decodes d's spec into v; a failure is a note and false.
func (c *converter) spec(d doc, v any) bool {
	var w struct {
		Spec json.RawMessage `json:"spec"`
	}
	err := sigyaml.Unmarshal(d.raw, &w)
	if err == nil && len(w.Spec) > 0 {
		err = json.Unmarshal(w.Spec, v)
	}
	if err != nil {
		c.note(d, fmt.Sprintf("spec: %v; skipped", err))
		return false
	}
	return true
}

func (c *converter) note(d doc, msg string) { c.notes = append(c.notes, d.ref()+": "+msg) }
func (c *converter) notef(format string, args ...any) {
	c.notes = append(c.notes, fmt.Sprintf(format, args...))
}

// addresses are a pool's addresses as written, with a CIDR that has host
// bits set ("198.51.100.10/24", as in MetalLB's documentation) turned into
// the block MetalLB and OpenELB take it for (Go's net.ParseCIDR), with a
// note; the agent refuses such a CIDR as a likely typo.
func (c *converter) addresses(d doc, in []string) []string {
	out := make([]string, len(in))
	for i, a := range in {
		out[i] = strings.TrimSpace(a)
		if pfx, err := netip.ParsePrefix(out[i]); err == nil && pfx != pfx.Masked() {
			out[i] = pfx.Masked().String()
			c.note(d, fmt.Sprintf("address %q has host bits set: written as %s, the block it stands for there", a, out[i]))
		}
	}
	return out
}

func mergeStrings(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// toml writes vipspeaker.toml.
func (c *converter) toml() string {
	var b bytes.Buffer
	b.WriteString("# Converted by `vipspeaker migrate`; check it with `vipspeaker check`.\n")
	if c.defaultClass {
		b.WriteString("\n# MetalLB handles LoadBalancer Services that name no loadBalancerClass\n" +
			"# (unless its speaker and controller ran with --lb-class): so does the agent.\ndefault-class = true\n")
	}
	for _, p := range c.pools {
		fmt.Fprintf(&b, "\n[[pools]]\nname = %s\naddresses = %s\nmode = %q\nauto-assign = %t\n", quote(p.name), list(p.addresses), p.mode, p.autoAssign)
		if p.avoidBuggy {
			b.WriteString("avoid-buggy-ips = true\n")
		}
		if len(p.namespaces) > 0 {
			fmt.Fprintf(&b, "namespaces = %s\n", list(p.namespaces))
		}
		if p.namespaceSelector != "" {
			fmt.Fprintf(&b, "namespace-selector = %s\n", quote(p.namespaceSelector))
		}
		if p.serviceSelector != "" {
			fmt.Fprintf(&b, "service-selector = %s\n", quote(p.serviceSelector))
		}
		if p.priority > 0 {
			fmt.Fprintf(&b, "priority = %d\n", p.priority)
		}
		if p.mode == "layer2" {
			ifaces := p.interfaces
			if len(ifaces) == 0 {
				ifaces = []string{"eth0"}
				c.notef("pool %s: layer2 answers on the interfaces named here, and the source named none (MetalLB: every interface); eth0 is a guess: set [pools.layer2] interfaces", p.name)
			}
			fmt.Fprintf(&b, "  [pools.layer2]\n  interfaces = %s\n", list(ifaces))
		}
		if p.allPeers {
			p.peers = nil
		}
		if p.nodeSelector != "" || len(p.communities) > 0 || p.localPref != 0 || p.aggregation != 0 || p.aggregationV6 != 0 || len(p.peers) > 0 {
			b.WriteString("  [pools.advertise]\n")
			if p.nodeSelector != "" {
				fmt.Fprintf(&b, "  node-selector = %s\n", quote(p.nodeSelector))
			}
			if len(p.communities) > 0 {
				fmt.Fprintf(&b, "  communities = %s\n", list(p.communities))
			}
			if p.localPref != 0 {
				fmt.Fprintf(&b, "  local-pref = %d\n", p.localPref)
			}
			if p.aggregation != 0 {
				fmt.Fprintf(&b, "  aggregation-length = %d\n", p.aggregation)
			}
			if p.aggregationV6 != 0 {
				fmt.Fprintf(&b, "  aggregation-length-v6 = %d\n", p.aggregationV6)
			}
			if len(p.peers) > 0 {
				fmt.Fprintf(&b, "  peers = %s\n", list(p.peers))
			}
		}
	}
	var restricted []neighbor
	for _, n := range c.neighbors {
		if n.nodeSelector != "" {
			restricted = append(restricted, n)
		}
	}
	for _, n := range restricted {
		fmt.Fprintf(&b, "\n[[peer-nodes]]\nneighbors = [%s]\nnode-selector = %s\n", quote(n.address), quote(n.nodeSelector))
	}
	return b.String()
}

// gobgp writes gobgp.conf.
func (c *converter) gobgp() string {
	if len(c.neighbors) == 0 {
		return ""
	}
	as := c.globalAS
	if as == 0 {
		as = c.neighbors[0].localAS
	}
	var v6 bool
	for _, p := range c.pools {
		for _, a := range p.addresses {
			v6 = v6 || strings.Contains(a, ":")
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Converted by `vipspeaker migrate`.\n[global.config]\n  as = %d\n", as)
	seen := map[string]string{}
	for _, n := range c.neighbors {
		if prev, dup := seen[n.address]; dup {
			c.notef("%s: neighbor %s is already defined by %s: skipped (one session per address)", n.from, n.address, prev)
			continue
		}
		seen[n.address] = n.from
		fmt.Fprintf(&b, "\n# from %s\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = %s\n    peer-as = %d\n", n.from, quote(n.address), n.peerAS)
		if n.localAS != 0 && n.localAS != as {
			fmt.Fprintf(&b, "    local-as = %d\n", n.localAS)
		}
		if n.password != "" {
			fmt.Fprintf(&b, "    auth-password = %s\n", quote(n.password))
		}
		if n.hold != 0 || n.keepalive != 0 || n.connectRetry != 0 {
			b.WriteString("  [neighbors.timers.config]\n")
			if n.hold != 0 {
				fmt.Fprintf(&b, "    hold-time = %s\n", num(n.hold))
			}
			if n.keepalive != 0 {
				fmt.Fprintf(&b, "    keepalive-interval = %s\n", num(n.keepalive))
			}
			if n.connectRetry != 0 {
				fmt.Fprintf(&b, "    connect-retry = %s\n", num(n.connectRetry))
			}
		}
		if n.port != 0 || n.source != "" {
			b.WriteString("  [neighbors.transport.config]\n")
			if n.port != 0 {
				fmt.Fprintf(&b, "    remote-port = %d\n", n.port)
			}
			if n.source != "" {
				fmt.Fprintf(&b, "    local-address = %s\n", quote(n.source))
			}
		}
		if n.multihop {
			b.WriteString("  [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = 255\n")
		}
		if n.bfd {
			fmt.Fprintf(&b, "  [neighbors.bfd.config]\n    enabled = true\n    desired-minimum-tx-interval = %d\n    required-minimum-receive = %d\n    detection-multiplier = %d\n",
				n.bfdTx*1000, n.bfdRx*1000, n.bfdMult)
		}
		if n.gracefulRestart {
			b.WriteString("  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 120\n")
		}
		for _, fam := range families(v6) {
			fmt.Fprintf(&b, "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = %q\n", fam)
			if n.gracefulRestart {
				b.WriteString("    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n")
			}
		}
	}
	return b.String()
}

func families(v6 bool) []string {
	if v6 {
		return []string{"ipv4-unicast", "ipv6-unicast"}
	}
	return []string{"ipv4-unicast"}
}

func quote(s string) string { return strconv.Quote(s) }

func list(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// Files converts the documents of the named files ("-" reads stdin).
func Files(names []string, stdin io.Reader) (*Result, error) {
	var in bytes.Buffer
	for _, name := range names {
		var b []byte
		var err error
		if name == "-" {
			b, err = io.ReadAll(stdin)
		} else {
			b, err = os.ReadFile(name)
		}
		if err != nil {
			return nil, err
		}
		if err := syntax(b); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		in.Write(b)
		in.WriteString("\n---\n")
	}
	return Convert(&in)
}

// syntax checks that each YAML document of one file parses, and names
// the lines of the first that does not (the parser's own line numbers
// count from places a reader cannot find).
func syntax(b []byte) error {
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	start := 0
	for n, i := 1, 0; i <= len(lines); i++ {
		if i < len(lines) && strings.TrimRight(lines[i], " \t\r\n") != "---" {
			continue
		}
		var node yaml.Node
		if err := yaml.Unmarshal([]byte(strings.Join(lines[start:i], "")), &node); err != nil {
			return fmt.Errorf("document %d (lines %d-%d): %w", n, start+1, i, err)
		}
		start, n = i+1, n+1
	}
	return nil
}

// WriteDir writes res as a config directory: vipspeaker.toml, and
// gobgp.conf when there is BGP.
func (res *Result) WriteDir(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, config.FileName), []byte(res.TOML), 0o644); err != nil {
		return err
	}
	if res.GoBGP == "" {
		return nil
	}
	return os.WriteFile(filepath.Join(dir, config.GoBGPFileName), []byte(res.GoBGP), 0o644)
}
