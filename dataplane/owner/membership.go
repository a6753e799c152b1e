package owner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultPort is memberlist's usual port, as MetalLB's speakers use it.
const DefaultPort = 7946

// Timing of the failure detector. A speaker probes one other speaker every
// ProbeInterval and expects an ack within ProbeTimeout (else asks up to
// three others to probe indirectly); a node that fails is suspected for
// SuspicionMult*ProbeInterval (scaled by log10 of the cluster size) before
// it is declared dead. On a LAN with a handful of speakers a killed speaker
// is declared dead in roughly 0.3–0.7 s.
const (
	probeInterval  = 100 * time.Millisecond
	probeTimeout   = 50 * time.Millisecond
	suspicionMult  = 3
	suspicionMax   = 3
	gossipInterval = 50 * time.Millisecond
	gossipNodes    = 3
	pushPull       = 10 * time.Second
	tcpTimeout     = 2 * time.Second
	rejoinEvery    = 5 * time.Second
	leaveTimeout   = time.Second
)

// Options configure a Membership. NodeName is required.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// NodeName is this speaker's node name, the name other speakers and the
	// rendezvous hash know it by.
	NodeName string
	// BindAddr is the address to listen on and to advertise (the node's
	// address on the layer2 segment). Required: an unspecified address
	// would make memberlist guess which address to advertise.
	BindAddr netip.Addr
	// BindPort (0: DefaultPort) for both UDP and TCP.
	BindPort int
	// Join lists other speakers, "host" or "host:port" (standalone mode:
	// [membership] join; in a cluster the caller finds them from the API).
	Join []string
	// SecretFile holds the secret from which the key that encrypts and
	// authenticates all membership traffic is derived (see LoadKey). Key,
	// when set, is used as the AES key instead (16, 24 or 32 bytes).
	// Without either, traffic is in clear (logged).
	SecretFile string
	Key        []byte
}

// ExitMode says what Run does when its context ends.
type ExitMode int

const (
	// Leave says goodbye, so the others drop this node at once and its
	// VIPs move without waiting for failure detection (the default).
	Leave ExitMode = iota
	// Restart announces a restart window and goes quiet without leaving;
	// the others keep this node healthy until the window ends or it
	// comes back.
	Restart
	// Vanish shuts down without a word, as kill -9 would: the others find
	// out through failure detection (tests and benchmarks).
	Vanish
)

// Membership is this speaker's view of which speakers are healthy.
type Membership struct {
	log    *slog.Logger
	m      *metrics
	name   string
	cfg    *memberlist.Config
	join   []string
	ready  chan struct{}
	change chan struct{}

	mu           sync.Mutex
	list         *memberlist.Memberlist
	local        nodeMeta         // what this node tells the others
	links        map[string]Links // members' layer2 links, this node's included
	checks       map[string]Check // members' health check states, this node's included
	rejoin       chan struct{}
	restartUntil map[string]time.Time // others' announced restart windows
	restartKeep  map[string]time.Time // dead members kept healthy until
	leaving      map[string]bool      // members that said they leave for good
	exit         ExitMode
	window       time.Duration
	running      bool
	rejoined     []chan struct{}
}

// nodeMeta is what a speaker tells the others about itself.
type nodeMeta struct {
	// RestartUntilMS is a Unix time in milliseconds: the node is
	// restarting and should be kept as owner until then.
	RestartUntilMS int64 `json:"restart_until_ms,omitempty"`
	// Leaving: the node is leaving for good; drop it now.
	Leaving bool `json:"leaving,omitempty"`
	// Links are the node's layer2 interfaces (nil: it publishes none, as
	// agents before the link check did).
	Links Links `json:"l2,omitempty"`
	// Check is the node's health check state (nil: no checked VIP here).
	Check *Check `json:"cp,omitempty"`
}

// LoadKey reads the membership secret and derives the 32-byte AES key
// from it (SHA-256 of the file's content without surrounding white space),
// so any secret works as written: `openssl rand -base64 32`, a
// Kubernetes Secret's value, a passphrase. It must hold at least 16 bytes.
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read membership secret %s: %w", path, err)
	}
	t := bytes.TrimSpace(b)
	if len(t) < 16 {
		return nil, fmt.Errorf("membership secret %s: want at least 16 bytes, got %d", path, len(t))
	}
	sum := sha256.Sum256(t)
	return sum[:], nil
}

func validKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }

// NewMembership validates opts. It opens nothing.
func NewMembership(opts Options) (*Membership, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "membership")
	if opts.NodeName == "" {
		return nil, errors.New("membership: node name is required")
	}
	if !opts.BindAddr.IsValid() || opts.BindAddr.IsUnspecified() {
		return nil, errors.New("membership: bind address is required")
	}
	port := opts.BindPort
	if port == 0 {
		port = DefaultPort
	}
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("membership: bad port %d", port)
	}
	key := opts.Key
	if key == nil && opts.SecretFile != "" {
		k, err := LoadKey(opts.SecretFile)
		if err != nil {
			return nil, err
		}
		key = k
	}
	if key != nil && !validKeyLen(len(key)) {
		return nil, fmt.Errorf("membership: key must be 16, 24 or 32 bytes, got %d", len(key))
	}
	if key == nil {
		log.Warn("membership traffic is not encrypted: set [membership] secret-file")
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	ms := &Membership{
		log:          log,
		m:            m,
		name:         opts.NodeName,
		join:         normalizeJoin(opts.Join),
		ready:        make(chan struct{}),
		change:       make(chan struct{}, 1),
		rejoin:       make(chan struct{}, 1),
		links:        map[string]Links{},
		checks:       map[string]Check{},
		restartUntil: map[string]time.Time{},
		restartKeep:  map[string]time.Time{},
		leaving:      map[string]bool{},
	}
	c := memberlist.DefaultLANConfig()
	c.Name = opts.NodeName
	c.BindAddr = opts.BindAddr.String()
	c.BindPort = port
	c.AdvertiseAddr = opts.BindAddr.String()
	c.AdvertisePort = port
	c.SecretKey = key
	c.ProbeInterval = probeInterval
	c.ProbeTimeout = probeTimeout
	c.SuspicionMult = suspicionMult
	c.SuspicionMaxTimeoutMult = suspicionMax
	c.GossipInterval = gossipInterval
	c.GossipNodes = gossipNodes
	c.PushPullInterval = pushPull
	c.TCPTimeout = tcpTimeout
	// Every probe, ack and gossip packet would otherwise go through LZW,
	// whose writer allocates and clears its table per message: 15 % of an
	// idle agent's CPU in a profile of the 10-agent fleet, for packets of
	// a few dozen bytes. Receivers decode compressed and plain messages
	// alike, so a rolling update mixes both without harm.
	c.EnableCompression = false
	// A restarted speaker comes back under the same name, maybe at a new
	// address (a new Pod IP): let it reclaim its name at once.
	c.DeadNodeReclaimTime = time.Millisecond
	c.Events = (*events)(ms)
	c.Delegate = (*delegate)(ms)
	c.Logger = newStdLogger(log)
	ms.cfg = c
	return ms, nil
}

func normalizeJoin(in []string) []string {
	var out []string
	for _, j := range in {
		j = strings.TrimSpace(j)
		if j == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(j); err != nil {
			j = net.JoinHostPort(j, strconv.Itoa(DefaultPort))
		}
		out = append(out, j)
	}
	return out
}

// Ready is closed once the first join attempt is over (joined, nobody
// reachable, or nothing to join). Owners computed before then would think
// this node is alone and claim every VIP.
func (ms *Membership) Ready() <-chan struct{} { return ms.ready }

// Changes receives a value (coalesced) whenever the healthy set may have
// changed.
func (ms *Membership) Changes() <-chan struct{} { return ms.change }

func (ms *Membership) notify() {
	select {
	case ms.change <- struct{}{}:
	default:
	}
}

// Healthy returns, sorted, the names of the speakers to hash over: alive
// and suspected members (a suspect is not yet dead), plus dead ones still
// inside an announced restart window; not those that announced they leave
// for good. Before Run it is empty.
func (ms *Membership) Healthy() []string {
	// memberlist calls our event delegate with its node lock held, and the
	// delegate takes ms.mu: never call into memberlist holding ms.mu.
	ms.mu.Lock()
	list := ms.list
	ms.mu.Unlock()
	if list == nil {
		return nil
	}
	ms.mu.Lock()
	seen := maps.Clone(ms.leaving)
	ms.mu.Unlock()
	if seen == nil {
		seen = map[string]bool{}
	}
	var out []string
	for _, n := range list.Members() {
		if !seen[n.Name] {
			seen[n.Name] = true
			out = append(out, n.Name)
		}
	}
	now := time.Now()
	ms.mu.Lock()
	for n, until := range ms.restartKeep {
		if now.Before(until) && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	ms.mu.Unlock()
	slices.Sort(out)
	return out
}

// SetExitMode chooses what Run does when its context ends; for Restart,
// window is how long the others keep this node as owner.
func (ms *Membership) SetExitMode(mode ExitMode, window time.Duration) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.exit, ms.window = mode, window
}

// Run starts memberlist, joins the configured speakers (retrying those not
// reachable), and serves until ctx ends; then it leaves (or announces a
// restart, see SetExitMode) and shuts down.
func (ms *Membership) Run(ctx context.Context) error {
	ms.mu.Lock()
	if ms.running || ms.list != nil {
		ms.mu.Unlock()
		return errors.New("membership: already started")
	}
	ms.running = true
	ms.mu.Unlock()
	list, err := memberlist.Create(ms.cfg)
	if err != nil {
		return fmt.Errorf("start membership on %s:%d: %w", ms.cfg.BindAddr, ms.cfg.BindPort, err)
	}
	ms.mu.Lock()
	ms.list = list
	ms.mu.Unlock()
	ms.log.Info("membership started", "addr", net.JoinHostPort(ms.cfg.BindAddr, strconv.Itoa(ms.cfg.BindPort)), "encrypted", ms.cfg.SecretKey != nil)
	ms.notify()

	ms.joinMissing()
	close(ms.ready)

	t := time.NewTicker(rejoinEvery)
	defer t.Stop()
	expiry := time.NewTicker(100 * time.Millisecond)
	defer expiry.Stop()
	for {
		select {
		case <-ctx.Done():
			ms.mu.Lock()
			ms.running = false
			for _, c := range ms.rejoined {
				close(c)
			}
			ms.rejoined = nil
			ms.mu.Unlock()
			return ms.stop()
		case <-t.C:
			ms.joinMissing()
		case <-ms.rejoin:
			ms.mu.Lock()
			waiting := ms.rejoined
			ms.rejoined = nil
			ms.mu.Unlock()
			ms.joinMissing()
			for _, c := range waiting {
				close(c)
			}
		case <-expiry.C:
			ms.expireRestarts()
		}
	}
}

// SetJoin replaces the speakers to join (in a cluster: the other nodes'
// addresses, from the API server); Run joins those not yet members at its
// next retry.
func (ms *Membership) SetJoin(peers []string) {
	j := normalizeJoin(peers)
	ms.mu.Lock()
	ms.join = j
	ms.mu.Unlock()
}

// joinMissing joins the configured speakers that are not members now.
func (ms *Membership) joinMissing() {
	ms.mu.Lock()
	list, join := ms.list, ms.join
	ms.mu.Unlock()
	if len(join) == 0 {
		return
	}
	known := map[string]bool{}
	for _, n := range list.Members() {
		known[net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))] = true
	}
	var todo []string
	for _, j := range join {
		if !known[j] {
			todo = append(todo, j)
		}
	}
	if len(todo) == 0 {
		return
	}
	n, err := list.Join(todo)
	if err != nil && n == 0 {
		ms.log.Debug("join speakers", "peers", strings.Join(todo, ","), "err", err)
		return
	}
	ms.log.Debug("joined speakers", "contacted", n)
}

// expireRestarts drops restart windows that are over and signals a change.
func (ms *Membership) expireRestarts() {
	ms.mu.Lock()
	now := time.Now()
	changed := false
	for n, until := range ms.restartKeep {
		if !now.Before(until) {
			delete(ms.restartKeep, n)
			changed = true
			ms.log.Info("speaker did not come back within its restart window", "node", n)
		}
	}
	ms.mu.Unlock()
	if changed {
		ms.notify()
	}
}

func (ms *Membership) stop() error {
	ms.mu.Lock()
	list, mode, window := ms.list, ms.exit, ms.window
	ms.mu.Unlock()
	var errs []error
	switch mode {
	case Vanish:
	case Restart:
		ms.mu.Lock()
		ms.local.RestartUntilMS = time.Now().Add(window).UnixMilli()
		ms.mu.Unlock()
		if err := list.UpdateNode(leaveTimeout); err != nil {
			errs = append(errs, fmt.Errorf("announce restart window: %w", err))
		}
		ms.log.Info("announced restart window; leaving without handing off", "window", window)
	default:
		// Say we are leaving first: the others drop us from the hash on
		// this update and count the departure as graceful (memberlist's
		// own leave notification does not tell a leave from a death).
		ms.mu.Lock()
		ms.local.Leaving = true
		ms.mu.Unlock()
		if err := list.UpdateNode(leaveTimeout); err != nil {
			errs = append(errs, fmt.Errorf("announce leave: %w", err))
		}
		if err := list.Leave(leaveTimeout); err != nil {
			errs = append(errs, fmt.Errorf("leave membership: %w", err))
		}
		ms.log.Info("left membership; VIPs hand off now")
	}
	if err := list.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("shut down membership: %w", err))
	}
	return errors.Join(errs...)
}

// events receives memberlist's join/leave/update callbacks.
type events Membership

func (e *events) NotifyJoin(n *memberlist.Node) {
	ms := (*Membership)(e)
	ms.observeMeta(n)
	ms.mu.Lock()
	delete(ms.restartKeep, n.Name)
	ms.mu.Unlock()
	ms.m.events.WithLabelValues("join").Inc()
	ms.log.Info("speaker joined", "node", n.Name, "addr", n.Address())
	ms.notify()
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	ms := (*Membership)(e)
	ms.mu.Lock()
	kind := "dead"
	if ms.leaving[n.Name] {
		kind = "left"
	}
	delete(ms.leaving, n.Name)
	delete(ms.links, n.Name)
	delete(ms.checks, n.Name)
	until, restarting := ms.restartUntil[n.Name]
	if restarting && kind == "dead" && time.Now().Before(until) {
		ms.restartKeep[n.Name] = until
	} else {
		restarting = false
	}
	delete(ms.restartUntil, n.Name)
	ms.mu.Unlock()
	ms.m.events.WithLabelValues(kind).Inc()
	if restarting {
		ms.log.Info("speaker restarting; keeping its VIPs until it returns or the window ends", "node", n.Name, "until", until)
	} else {
		ms.log.Info("speaker gone", "node", n.Name, "how", kind)
	}
	ms.notify()
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	ms := (*Membership)(e)
	ms.observeMeta(n)
	ms.m.events.WithLabelValues("update").Inc()
	ms.notify()
}

func (ms *Membership) observeMeta(n *memberlist.Node) {
	var meta nodeMeta
	if len(n.Meta) > 0 {
		_ = json.Unmarshal(n.Meta, &meta)
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if n.Name != ms.name {
		ms.observeLinks(n.Name, meta.Links)
		if meta.Check != nil {
			ms.checks[n.Name] = *meta.Check
		} else {
			delete(ms.checks, n.Name)
		}
	}
	if meta.Leaving {
		ms.leaving[n.Name] = true
	} else {
		delete(ms.leaving, n.Name)
	}
	if meta.RestartUntilMS > 0 {
		ms.restartUntil[n.Name] = time.UnixMilli(meta.RestartUntilMS)
	} else {
		delete(ms.restartUntil, n.Name)
	}
}

// delegate gives memberlist this node's metadata; no user messages.
type delegate Membership

func (d *delegate) NodeMeta(limit int) []byte {
	ms := (*Membership)(d)
	ms.mu.Lock()
	local := ms.local
	ms.mu.Unlock()
	b, _ := json.Marshal(local)
	if len(b) > limit {
		// Too many prefixes: say only up or down (the subnet check then
		// treats this node as carrying no subnet). SetLinks warned.
		local.Links = withoutPrefixes(local.Links)
		if b, _ = json.Marshal(local); len(b) > limit {
			return nil
		}
	}
	return b
}

func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// newStdLogger routes memberlist's "[LEVEL] memberlist: ..." lines into
// slog at the matching level.
func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(levelWriter{l}, "", 0)
}

type levelWriter struct{ l *slog.Logger }

func (w levelWriter) Write(b []byte) (int, error) {
	msg := strings.TrimSpace(string(b))
	level := slog.LevelInfo
	for _, p := range []struct {
		prefix string
		level  slog.Level
	}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}} {
		if strings.HasPrefix(msg, p.prefix) {
			level = p.level
			msg = strings.TrimSpace(strings.TrimPrefix(msg, p.prefix))
			break
		}
	}
	w.l.Log(context.Background(), level, msg)
	return len(b), nil
}

var _ io.Writer = levelWriter{}
