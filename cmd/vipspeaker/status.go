package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vipspeaker/vipspeaker/routing"
)

// statusSocket is the name of the status socket in --run-dir.
const statusSocket = "vipspeaker.sock"

// statusPath is the one HTTP path served on the status socket.
const statusPath = "/v1/status"

// statusReport is what `vipspeaker status -o json` prints and what the
// agent serves on its socket. Field names are part of the user contract.
type statusReport struct {
	Node    string        `json:"node"`
	Version string        `json:"version"`
	Time    time.Time     `json:"time"`
	VIPs    []vipStatus   `json:"vips"`
	BGP     bgpStatus     `json:"bgp"`
	Config  configStatus  `json:"config"`
	Ready   []string      `json:"notReady,omitempty"`
	Errors  []statusError `json:"errors,omitempty"`
}

type vipStatus struct {
	Address string `json:"address"`
	Service string `json:"service"`
	Mode    string `json:"mode"`
	Pool    string `json:"pool,omitempty"`
	// Role is this node's part for the VIP: "announcing" (bgp mode, BGP
	// speaker running with a config), "not-announced" (bgp mode, BGP
	// off); for layer2 "owner" (this node answers ARP/NDP), "standby"
	// (another node, Owner, does), "no-owner" (no healthy candidate) or
	// "unknown" (no owner election running).
	Role string `json:"role"`
	// Owner is the node answering for a layer2 VIP, when known.
	Owner string `json:"owner,omitempty"`
	// RxPackets/RxBytes are null until a receive counter exists for the
	// VIP (vipspeaker_vip_receive_*_total in the registry).
	RxPackets *uint64 `json:"rxPackets"`
	RxBytes   *uint64 `json:"rxBytes"`
}

type bgpStatus struct {
	// Configured is true once a gobgp.conf was accepted.
	Configured bool         `json:"configured"`
	Running    bool         `json:"running"`
	Peers      []peerStatus `json:"peers"`
}

type peerStatus struct {
	Peer             string  `json:"peer"`
	PeerAS           uint32  `json:"peerAS"`
	LocalAS          uint32  `json:"localAS"`
	State            string  `json:"state"`
	AdminDown        bool    `json:"adminDown,omitempty"`
	UptimeSeconds    float64 `json:"uptimeSeconds"`
	PrefixesSent     uint64  `json:"prefixesSent"`
	PrefixesReceived uint64  `json:"prefixesReceived"`
	PrefixesAccepted uint64  `json:"prefixesAccepted"`
	// BFD is "" when BFD is off for the peer.
	BFD             string `json:"bfd,omitempty"`
	GracefulRestart bool   `json:"gracefulRestart,omitempty"`
	Flaps           uint32 `json:"flaps"`
}

type configStatus struct {
	ConfigDir   string `json:"configDir,omitempty"`
	ServicesDir string `json:"servicesDir,omitempty"`
	// Generation counts the configurations accepted since start.
	Generation uint64 `json:"generation"`
	// LastReloadSuccessful mirrors vipspeaker_config_last_reload_successful.
	LastReloadSuccessful bool       `json:"lastReloadSuccessful"`
	LastAccepted         *time.Time `json:"lastAccepted,omitempty"`
	// LastError is why the last refused configuration was refused; it
	// stays after a later good one, with its time, so a flapping
	// ConfigMap can be diagnosed.
	LastError     string     `json:"lastError,omitempty"`
	LastErrorTime *time.Time `json:"lastErrorTime,omitempty"`
}

type statusError struct {
	Part  string `json:"part"`
	Error string `json:"error"`
}

// configState remembers why the last configuration was refused, for
// `vipspeaker status`. The zero value is ready to use; a nil *configState
// records nothing.
//
// It also carries the one fact status shows that the agent struct does not
// hold: the layer2 owner election's view (setL2Owners).
type configState struct {
	mu      sync.Mutex
	lastErr string
	errTime time.Time
	owners  func() map[netip.Addr]string
}

// setL2Owners gives status the layer2 owner election's answer: the node
// that owns each layer2 VIP (owner.Controller.Owners).
func (c *configState) setL2Owners(f func() map[netip.Addr]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.owners = f
}

// l2Owners returns the owners, and false when no election runs.
func (c *configState) l2Owners() (map[netip.Addr]string, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	f := c.owners
	c.mu.Unlock()
	if f == nil {
		return nil, false
	}
	return f(), true
}

// refused records the problems of a refused configuration.
func (c *configState) refused(errs ...error) {
	if c == nil || len(errs) == 0 {
		return
	}
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		if e != nil {
			msgs = append(msgs, e.Error())
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastErr = strings.Join(msgs, "\n")
	c.errTime = time.Now()
}

func (c *configState) snapshot() (string, time.Time) {
	if c == nil {
		return "", time.Time{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr, c.errTime
}

// status collects the report. It reads only what the parts publish
// (table.List, bgp.Peers, the registry) and never blocks on them for long.
func (a *agent) status(cs *configState) statusReport {
	r := statusReport{Version: version, Time: time.Now().UTC(), VIPs: []vipStatus{}}
	r.BGP.Peers = []peerStatus{}
	if a.f != nil {
		r.Node = a.f.nodeName
		r.Config.ConfigDir = a.f.configDir
		r.Config.ServicesDir = a.f.servicesDir
	}

	a.bgpMu.Lock()
	r.BGP.Configured = a.bgpConf != nil
	a.bgpMu.Unlock()
	if a.bgp != nil {
		r.BGP.Running = a.bgp.Ready()
		for _, p := range a.bgp.Peers() {
			r.BGP.Peers = append(r.BGP.Peers, peerStatus{
				Peer:             p.Name(),
				PeerAS:           p.PeerAS,
				LocalAS:          p.LocalAS,
				State:            p.State,
				AdminDown:        p.AdminDown,
				UptimeSeconds:    p.Uptime.Seconds(),
				PrefixesSent:     p.PrefixesSent,
				PrefixesReceived: p.PrefixesReceived,
				PrefixesAccepted: p.PrefixesAccepted,
				BFD:              p.BFD,
				GracefulRestart:  p.GracefulRestart,
				Flaps:            p.Flaps,
			})
		}
	}

	rx := map[string]map[string]uint64{} // family -> vip -> value
	if a.reg != nil {
		mfs, err := a.reg.Gather()
		if err != nil {
			r.Errors = append(r.Errors, statusError{Part: "metrics", Error: err.Error()})
		}
		for _, mf := range mfs {
			switch mf.GetName() {
			case "vipspeaker_vip_receive_packets_total", "vipspeaker_vip_receive_bytes_total":
				m := map[string]uint64{}
				for _, mt := range mf.GetMetric() {
					if v := labelValue(mt, "vip"); v != "" {
						m[v] += uint64(mt.GetCounter().GetValue())
					}
				}
				rx[mf.GetName()] = m
			}
		}
	}
	owners, election := cs.l2Owners()
	if a.table != nil {
		for _, v := range a.table.List() {
			mode := v.Attrs.Mode
			if mode == "" {
				mode = routing.ModeBGP
			}
			vs := vipStatus{
				Address: v.Addr.String(),
				Service: v.Attrs.Service,
				Mode:    string(mode),
				Pool:    v.Attrs.Pool,
			}
			if mode == routing.ModeLayer2 {
				vs.Owner = owners[v.Addr]
				vs.Role = layer2Role(vs.Owner, r.Node, election)
			} else {
				vs.Role = bgpRole(r.BGP.Configured && r.BGP.Running)
			}
			if n, ok := rx["vipspeaker_vip_receive_packets_total"][vs.Address]; ok {
				vs.RxPackets = &n
			}
			if n, ok := rx["vipspeaker_vip_receive_bytes_total"][vs.Address]; ok {
				vs.RxBytes = &n
			}
			r.VIPs = append(r.VIPs, vs)
		}
	}

	if a.metrics != nil {
		r.Config.Generation = uint64(gaugeValue(a.metrics.generation))
		r.Config.LastReloadSuccessful = gaugeValue(a.metrics.lastReload) == 1
		if ts := gaugeValue(a.metrics.reloadTime); ts > 0 {
			sec, frac := math.Modf(ts)
			t := time.Unix(int64(sec), int64(frac*1e9)).UTC()
			r.Config.LastAccepted = &t
		}
	}
	if msg, at := cs.snapshot(); msg != "" {
		at = at.UTC()
		r.Config.LastError, r.Config.LastErrorTime = msg, &at
	}

	want := []string{"config", "vips"}
	if r.BGP.Configured {
		want = append(want, "bgp")
		a.ready.set("bgp", r.BGP.Running)
	}
	r.Ready = a.ready.missing(want...)
	return r
}

// bgpRole is this node's part for a bgp VIP: every node with the VIP
// announces it while its speaker runs.
func bgpRole(bgpRunning bool) string {
	if bgpRunning {
		return "announcing"
	}
	return "not-announced"
}

// layer2Role is this node's part for a layer2 VIP owned by owner.
func layer2Role(owner, node string, election bool) string {
	switch {
	case !election:
		return "unknown"
	case owner == "":
		return "no-owner"
	case owner == node:
		return "owner"
	default:
		return "standby"
	}
}

func gaugeValue(g prometheus.Gauge) float64 {
	if g == nil {
		return 0
	}
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return 0
	}
	return m.GetGauge().GetValue()
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// serveStatus answers `vipspeaker status` on the unix socket
// vipspeaker.sock in --run-dir until ctx ends. The socket is mode 0660:
// root and the socket's group may read the node's status; nothing on it
// changes anything. cs may be nil (no last-error reporting).
func (a *agent) serveStatus(ctx context.Context, cs *configState) error {
	path := filepath.Join(a.f.runDir, statusSocket)
	l, err := listenUnix(path, 0o660)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+statusPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(a.status(cs)); err != nil {
			a.log.Debug("write status", "component", "status", "error", err)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	defer os.Remove(path)
	select {
	case err := <-errc:
		return fmt.Errorf("serve status on %s: %w", path, err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			return fmt.Errorf("stop status server on %s: %w", path, err)
		}
		return nil
	}
}

// listenUnix listens on a unix socket at path. A socket file left by an
// agent that died is replaced; one another live agent answers on is not.
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("status socket %s: exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("status socket %s: another agent answers on it (one agent per --run-dir)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale status socket %s: %w", path, err)
		}
	}
	// Connecting needs write permission on the socket, which the usual
	// umask withholds from others until the chmod below.
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on status socket %s: %w", path, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod status socket %s: %w", path, err)
	}
	return l, nil
}

// fetchStatus asks the agent behind the socket for its report.
func fetchStatus(ctx context.Context, sock string) (*statusReport, []byte, error) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://vipspeaker"+statusPath, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, nil, fmt.Errorf("no agent answers on %s (is `vipspeaker run` running with this --run-dir?): %w", sock, err)
		}
		return nil, nil, fmt.Errorf("ask the agent on %s: %w", sock, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("read status from %s: %w", sock, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("agent on %s answered %s: %s", sock, resp.Status, strings.TrimSpace(string(body)))
	}
	var r statusReport
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, nil, fmt.Errorf("decode status from %s: %w", sock, err)
	}
	return &r, body, nil
}

// statusCommand is `vipspeaker status [--run-dir DIR] [-o table|json]`.
func statusCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vipspeaker status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runDir := fs.String("run-dir", "/run/vipspeaker", "the --run-dir of the agent to ask")
	output := fs.String("o", "table", "output format: table or json")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the agent")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vipspeaker status: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	if *output != "table" && *output != "json" {
		fmt.Fprintf(stderr, "vipspeaker status: -o %q: want table or json\n", *output)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r, raw, err := fetchStatus(ctx, filepath.Join(*runDir, statusSocket))
	if err != nil {
		fmt.Fprintf(stderr, "vipspeaker status: %v\n", err)
		return 1
	}
	if *output == "json" {
		if _, err := stdout.Write(raw); err != nil {
			return 1
		}
		return 0
	}
	if err := printStatus(stdout, r); err != nil {
		fmt.Fprintf(stderr, "vipspeaker status: %v\n", err)
		return 1
	}
	return 0
}

// printStatus writes the report as tables for people.
func printStatus(w io.Writer, r *statusReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	ready := "ready"
	if len(r.Ready) > 0 {
		ready = "not ready: waiting for " + strings.Join(r.Ready, ", ")
	}
	p("Node %s (vipspeaker %s), %s\n", dash(r.Node), r.Version, ready)

	p("\nVIPs (%d)\n", len(r.VIPs))
	p("ADDRESS\tSERVICE\tMODE\tPOOL\tROLE\tOWNER\tRX PACKETS\tRX BYTES\n")
	for _, v := range r.VIPs {
		p("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Address, dash(v.Service), v.Mode, dash(v.Pool), v.Role, dash(v.Owner),
			count(v.RxPackets), count(v.RxBytes))
	}

	switch {
	case !r.BGP.Configured:
		p("\nBGP: off (no gobgp.conf)\n")
	default:
		state := "running"
		if !r.BGP.Running {
			state = "starting"
		}
		p("\nBGP peers (%d, speaker %s)\n", len(r.BGP.Peers), state)
		p("PEER\tAS\tSTATE\tUPTIME\tSENT\tRECEIVED\tACCEPTED\tBFD\tFLAPS\n")
		for _, pe := range r.BGP.Peers {
			st := pe.State
			if pe.AdminDown {
				st += " (admin down)"
			}
			up := "-"
			switch {
			case pe.UptimeSeconds >= 1:
				up = (time.Duration(pe.UptimeSeconds) * time.Second).String()
			case pe.State == "established":
				up = "<1s"
			}
			p("%s\t%d\t%s\t%s\t%d\t%d\t%d\t%s\t%d\n", pe.Peer, pe.PeerAS, st, up,
				pe.PrefixesSent, pe.PrefixesReceived, pe.PrefixesAccepted, dash(pe.BFD), pe.Flaps)
		}
	}

	c := r.Config
	p("\nConfig\n")
	if c.ConfigDir != "" {
		p("directory\t%s\n", c.ConfigDir)
	}
	p("generation\t%d\n", c.Generation)
	last := "refused (the last good configuration stays in force)"
	if c.LastReloadSuccessful {
		last = "accepted"
	}
	if c.LastAccepted != nil {
		last += ", last accepted " + c.LastAccepted.Format(time.RFC3339)
	}
	p("last reload\t%s\n", last)
	if c.LastError == "" {
		p("last error\t-\n")
	} else {
		lines := strings.Split(c.LastError, "\n")
		p("last error\t%s (%s)\n", lines[0], c.LastErrorTime.Format(time.RFC3339))
		for _, l := range lines[1:] {
			p("\t%s\n", l)
		}
	}
	for _, e := range r.Errors {
		p("\nerror reading %s: %s\n", e.Part, e.Error)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func count(n *uint64) string {
	if n == nil {
		return "-"
	}
	return strconv.FormatUint(*n, 10)
}
