package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vipspeaker/vipspeaker/routing"
)

// ControlPlanePool is the name of the pool [control-plane] makes for its
// address (a [[pools]] entry may not use it), and the Service name its VIP
// carries in status and logs.
const ControlPlanePool = "control-plane"

// ControlPrepend is how many times a node whose check fails repeats its AS
// in the control-plane VIP's AS path (bgp mode): routers prefer the nodes
// whose check passes, and keep the route while none does.
const ControlPrepend = 3

// ControlPlane is the [control-plane] section: one VIP for the control
// plane (kubeadm's controlPlaneEndpoint), announced or answered for from
// the config alone, no API server needed, and held by the nodes whose
// local health check passes.
type ControlPlane struct {
	Address    netip.Addr
	Mode       routing.Mode
	Interfaces []string // layer2: where ARP/NDP is answered
	Check      HealthCheck
	// Line is where [control-plane] is written (for ClusterErrors).
	Line int
}

// ClusterErrors are what cluster mode (the ConfigMap) cannot do with a
// config that is otherwise valid: a [control-plane] VIP, which must not
// depend on the API server it fronts (run it from a config directory, as
// a static Pod: docs/INTERFACE.md).
func (c *Config) ClusterErrors(file string) []error {
	if c.ControlPlane == nil {
		return nil
	}
	return []error{&Error{File: file, Line: c.ControlPlane.Line, Field: "control-plane",
		Msg: "needs standalone mode (vipspeaker run --config-dir, e.g. a static Pod), not the ConfigMap: the control-plane VIP must not depend on the API server it fronts"}}
}

// HealthCheck is [control-plane.health-check].
type HealthCheck struct {
	URL                       string // http(s) GET, 2xx passes
	TCP                       string // host:port, a connection passes
	CAFile, CertFile, KeyFile string
	ServerName                string // the name the server's certificate must carry
	Interval, Timeout         time.Duration
	Rise, Fall                int
}

// Pool is the pool [control-plane] stands for: its address alone, its mode
// and interfaces, never handed to Services.
func (cp *ControlPlane) Pool() Pool {
	return Pool{
		Name:     ControlPlanePool,
		Prefixes: []netip.Prefix{netip.PrefixFrom(cp.Address, cp.Address.BitLen())},
		Mode:     cp.Mode,
		Layer2:   PoolLayer2{Interfaces: cp.Interfaces},
	}
}

// VIP is the control-plane VIP as this node puts it in its table. In bgp
// mode a node whose check fails still announces it, with its AS repeated
// ControlPrepend times, so routers send traffic to nodes that pass and the
// route stays when none does; in layer2 mode the election decides (see
// dataplane/owner.Elect).
func (cp *ControlPlane) VIP(passing bool) routing.VIP {
	v := routing.VIP{Addr: cp.Address, Attrs: routing.Attrs{Service: ControlPlanePool, Pool: ControlPlanePool, Mode: cp.Mode}}
	if !passing && cp.Mode == routing.ModeBGP {
		v.Attrs.Prepend = ControlPrepend
	}
	return v
}

// WithControlPlane is vips and the control-plane VIP (as VIP(passing)),
// when the config has one.
func (c *Config) WithControlPlane(vips []routing.VIP, passing bool) []routing.VIP {
	if c.ControlPlane == nil {
		return vips
	}
	return append(slices.Clip(vips), c.ControlPlane.VIP(passing))
}

type fileControlPlane struct {
	Address     string          `toml:"address"`
	Mode        *string         `toml:"mode"`
	Interfaces  []string        `toml:"interfaces"`
	HealthCheck fileHealthCheck `toml:"health-check"`
}

type fileHealthCheck struct {
	URL      string  `toml:"url"`
	TCP      string  `toml:"tcp"`
	CAFile   string  `toml:"ca-file"`
	CertFile string  `toml:"cert-file"`
	KeyFile  string  `toml:"key-file"`
	Server   string  `toml:"server-name"`
	Interval *string `toml:"interval"`
	Timeout  *string `toml:"timeout"`
	Rise     *int64  `toml:"rise"`
	Fall     *int64  `toml:"fall"`
}

// controlPlane validates [control-plane]; nil when absent.
func (v *validator) controlPlane(raw *fileControlPlane) *ControlPlane {
	if raw == nil {
		return nil
	}
	const at = "control-plane"
	cp := &ControlPlane{Mode: routing.ModeLayer2, Interfaces: raw.Interfaces, Line: v.pos.lineOf(at)}
	a, err := netip.ParseAddr(strings.TrimSpace(raw.Address))
	switch {
	case raw.Address == "":
		v.errorf(at+".address", []string{at}, "missing: the control-plane VIP (kubeadm's controlPlaneEndpoint address)")
	case err != nil || a.Zone() != "":
		v.errorf(at+".address", nil, "%q is not an IP address", raw.Address)
	default:
		cp.Address = a.Unmap()
		if err := checkSpecial(Range{First: cp.Address, Last: cp.Address}); err != nil {
			v.errorf(at+".address", nil, "%q %v", raw.Address, err)
		}
	}
	if raw.Mode != nil {
		switch m := routing.Mode(*raw.Mode); m {
		case routing.ModeBGP, routing.ModeLayer2:
			cp.Mode = m
		default:
			v.errorf(at+".mode", nil, "%q is not a mode (bgp or layer2)", *raw.Mode)
		}
	}
	for j, name := range raw.Interfaces {
		if err := checkIfName(name); err != nil {
			v.errorf(fmt.Sprintf("%s.interfaces[%d]", at, j), nil, "%v", err)
		}
	}
	if cp.Mode == routing.ModeLayer2 && len(raw.Interfaces) == 0 {
		v.errorf(at+".interfaces", []string{at + ".mode", at}, "layer2 mode needs interfaces (where ARP/NDP is answered for the VIP)")
	}
	cp.Check = v.healthCheck(at+".health-check", raw.HealthCheck)
	return cp
}

func (v *validator) healthCheck(at string, raw fileHealthCheck) HealthCheck {
	hc := HealthCheck{URL: raw.URL, TCP: raw.TCP, CAFile: raw.CAFile, CertFile: raw.CertFile, KeyFile: raw.KeyFile, ServerName: raw.Server,
		Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond, Rise: 3, Fall: 3}
	switch {
	case raw.URL == "" && raw.TCP == "":
		v.errorf(at, []string{"control-plane"}, "needs url (like \"https://127.0.0.1:6443/readyz\") or tcp (host:port)")
	case raw.URL != "" && raw.TCP != "":
		v.errorf(at+".tcp", nil, "give url or tcp, not both")
	case raw.URL != "":
		u, err := url.Parse(raw.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errorf(at+".url", nil, "%q is not an http:// or https:// URL", raw.URL)
		}
	default:
		if _, _, err := net.SplitHostPort(raw.TCP); err != nil || checkJoin(raw.TCP) != nil {
			v.errorf(at+".tcp", nil, "%q is not host:port", raw.TCP)
		}
	}
	for _, f := range []struct{ key, val string }{{"ca-file", raw.CAFile}, {"cert-file", raw.CertFile}, {"key-file", raw.KeyFile}} {
		if f.val != "" && !filepath.IsAbs(f.val) {
			v.errorf(at+"."+f.key, nil, "%q is not an absolute path", f.val)
		}
		if f.val != "" && raw.URL == "" {
			v.errorf(at+"."+f.key, nil, "only for an https url")
		}
	}
	if raw.Server != "" && !strings.HasPrefix(raw.URL, "https://") {
		v.errorf(at+".server-name", nil, "only for an https url")
	}
	if (raw.CertFile == "") != (raw.KeyFile == "") {
		v.errorf(at+".cert-file", []string{at + ".key-file"}, "cert-file and key-file go together")
	}
	dur := func(key string, s *string, min, max time.Duration, dst *time.Duration) {
		if s == nil {
			return
		}
		d, err := time.ParseDuration(*s)
		switch {
		case err != nil:
			v.errorf(at+"."+key, nil, "%q is not a duration (like \"100ms\")", *s)
		case d < min || d > max:
			v.errorf(at+"."+key, nil, "%s is out of range %s..%s", d, min, max)
		default:
			*dst = d
		}
	}
	dur("interval", raw.Interval, 10*time.Millisecond, time.Minute, &hc.Interval)
	dur("timeout", raw.Timeout, 10*time.Millisecond, time.Minute, &hc.Timeout)
	count := func(key string, n *int64, dst *int) {
		if n == nil {
			return
		}
		if *n < 1 || *n > 100 {
			v.errorf(at+"."+key, nil, "%d is out of range 1..100", *n)
			return
		}
		*dst = int(*n)
	}
	count("rise", raw.Rise, &hc.Rise)
	count("fall", raw.Fall, &hc.Fall)
	return hc
}

// controlPlanePool adds the pool of [control-plane] to cfg.Pools, for the
// overlap check and for the parts that follow pools (modes, layer2
// interfaces).
func (v *validator) controlPlanePool(cfg *Config) {
	for i, p := range cfg.Pools {
		if p.Name == ControlPlanePool {
			v.errorf(fmt.Sprintf("pools[%d].name", i), nil, "%q is the name of the [control-plane] VIP's pool; choose another", ControlPlanePool)
		}
	}
	p := cfg.ControlPlane.Pool()
	v.entries = append(v.entries, poolEntry{r: Range{First: p.Prefixes[0].Addr(), Last: p.Prefixes[0].Addr()},
		pool: len(cfg.Pools), order: len(v.entries), field: "control-plane.address", text: cfg.ControlPlane.Address.String()})
	cfg.Pools = append(cfg.Pools, p)
}
