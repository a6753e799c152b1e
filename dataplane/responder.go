package dataplane

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Options.
const (
	DefaultGratuitousCount    = 3
	DefaultGratuitousInterval = 500 * time.Millisecond
	DefaultResyncInterval     = 2 * time.Second
	conflictLogEvery          = 10 * time.Second
)

// Options configure a Responder. The zero value means defaults.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// GratuitousCount is how many rounds of gratuitous ARP (request and
	// reply form) and unsolicited NA are sent when this node becomes the
	// owner of a VIP on an interface. 0 means DefaultGratuitousCount; a
	// negative value sends none.
	GratuitousCount int
	// GratuitousInterval is the pause between rounds (0: default).
	GratuitousInterval time.Duration
	// ResyncInterval is how often interfaces that could not be opened are
	// retried and open ones checked for a new index or MAC (0: default).
	ResyncInterval time.Duration
	// StaleWindow is how long, after giving a VIP up, this node corrects
	// senders that still use its MAC for it (NFQUEUE; see stale_linux.go).
	// 0 means DefaultStaleWindow; negative turns correction off.
	StaleWindow time.Duration
	// QueueNum is the NFQUEUE number for corrections (0: DefaultQueueNum).
	QueueNum uint16
	// StateFile keeps the original arp_ignore/arp_announce values across
	// agent restarts (Detach leaves the sysctls set; the next agent adopts
	// the originals from here and its Close restores them), e.g.
	// /run/vipspeaker/layer2-sysctls.json. Empty: memory only.
	StateFile string
	// Announcer, when set, sends the gratuitous rounds in place of the
	// packet sockets (the XDP fast path's live frames); what it reports as
	// not announced goes out through the packet socket, as does a whole
	// round when it fails.
	Announcer Announcer
	// Enter runs fn inside the network namespace that holds the layer2
	// interfaces, on a locked OS thread: the packet sockets are opened and
	// the sysctls written there (an AF_PACKET socket keeps the namespace it
	// was created in). nil runs fn in the caller's namespace, which is
	// right for the agent (it runs inside the node's namespace). Tests pass
	// nstest's (*NS).Do.
	Enter func(fn func() error) error
	// OnConflict, when set, hears of another station (mac) claiming an
	// owned VIP on iface, as often as that is logged (at most every 10 s per
	// VIP and interface). It must not block.
	OnConflict func(vip netip.Addr, iface string, mac net.HardwareAddr)
}

// Announcer sends one round of gratuitous announcements for vips out of
// iface: for an IPv4 VIP a gratuitous ARP request and reply, for an IPv6
// VIP an unsolicited neighbour advertisement with Override. It returns the
// VIPs it did not announce (not owned in its own view), which the
// responder then sends through its packet socket. Frames it sends are
// counted by the program and read at scrape time (SetFastPath), not by the
// responder.
type Announcer interface {
	AnnounceOwned(iface string, vips []netip.Addr) (sent int, missed []netip.Addr, err error)
}

// Responder answers ARP requests and neighbour solicitations for the VIPs
// this node owns, on the layer2 interfaces it is given. New starts nothing;
// Run opens the interfaces and serves until its context ends; Close puts the
// sysctls back.
type Responder struct {
	log   *slog.Logger
	m     *metrics
	count int
	every time.Duration
	sync  time.Duration
	enter func(func() error) error
	// staleWindow and queueNum configure the corrector.
	staleWindow time.Duration
	queueNum    uint16
	stateFile   string
	corr        atomic.Pointer[corrector] // read by the ports' read loops without mu
	announcer   Announcer
	// announceErr is the last Announcer error logged (under mu), so a
	// failing fast path is logged once, not every round.
	announceErr string
	// listen opens an interface (replaceable in tests).
	listen     func(name string) (*port, error)
	onConflict func(netip.Addr, string, net.HardwareAddr)

	mu      sync.Mutex
	ifaces  map[string]bool
	owned   map[netip.Addr][]string
	ports   map[string]*port
	saved   map[string][]sysctlChange
	openErr map[string]string
	runCtx  context.Context
	running bool
	closed  bool
	wg      sync.WaitGroup
}

// packetConn is what the responder needs of an AF_PACKET socket.
type packetConn interface {
	ReadFrom(b []byte) (int, net.Addr, error)
	WriteTo(b []byte, addr net.Addr) (int, error)
	Close() error
	JoinGroup(addr net.HardwareAddr) error
	LeaveGroup(addr net.HardwareAddr) error
}

// groupJoiner joins and leaves IPv6 multicast groups on one interface.
type groupJoiner interface {
	Join(group netip.Addr) error
	Leave(group netip.Addr) error
	Close() error
}

// port is one open layer2 interface.
type port struct {
	name  string
	index int
	mac   net.HardwareAddr
	arp   packetConn
	ndp   packetConn
	// to builds the link-layer destination for WriteTo.
	to func(net.HardwareAddr) net.Addr
	// mc joins and leaves solicited-node groups on the interface.
	mc groupJoiner

	owned  atomic.Pointer[map[netip.Addr]struct{}]
	groups map[netip.Addr]bool // joined solicited-node groups (under Responder.mu)
	ctx    context.Context
	cancel context.CancelFunc
	broken atomic.Bool

	conflictMu   sync.Mutex
	conflictSeen map[netip.Addr]time.Time
}

func (p *port) owns(a netip.Addr) bool {
	m := p.owned.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[a]
	return ok
}

// New validates opts and returns a Responder. It opens nothing.
func New(opts Options) (*Responder, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.GratuitousInterval < 0 || opts.ResyncInterval < 0 {
		return nil, errors.New("dataplane options: negative interval")
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Responder{
		log:     log.With("component", "dataplane"),
		m:       m,
		count:   opts.GratuitousCount,
		every:   opts.GratuitousInterval,
		sync:    opts.ResyncInterval,
		enter:   opts.Enter,
		ifaces:  map[string]bool{},
		owned:   map[netip.Addr][]string{},
		ports:   map[string]*port{},
		saved:   map[string][]sysctlChange{},
		openErr: map[string]string{},
	}
	if r.count == 0 {
		r.count = DefaultGratuitousCount
	}
	if r.every == 0 {
		r.every = DefaultGratuitousInterval
	}
	if r.sync == 0 {
		r.sync = DefaultResyncInterval
	}
	if r.enter == nil {
		r.enter = func(fn func() error) error { return fn() }
	}
	r.staleWindow, r.queueNum, r.stateFile = opts.StaleWindow, opts.QueueNum, opts.StateFile
	r.announcer = opts.Announcer
	if r.staleWindow == 0 {
		r.staleWindow = DefaultStaleWindow
	}
	if r.queueNum == 0 {
		r.queueNum = DefaultQueueNum
	}
	r.listen = r.listenPort
	r.onConflict = opts.OnConflict
	return r, nil
}

// SetInterfaces declares the layer2 interfaces (the union of the layer2
// pools' interfaces). Newly named ones are opened and get arp_ignore=1 /
// arp_announce=2; ones no longer named are closed and their sysctls put
// back. It may be called before or during Run.
func (r *Responder) SetInterfaces(names []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ifaces = map[string]bool{}
	for _, n := range names {
		if n != "" {
			r.ifaces[n] = true
		}
	}
	if r.running {
		r.syncLocked()
	}
}

// SetOwned declares every VIP this node owns with the interfaces it is
// answered on. It replaces the previous set: VIPs no longer present stop
// being answered at once, newly owned (VIP, interface) pairs are announced
// with gratuitous ARP / unsolicited NA. Interfaces not declared with
// SetInterfaces are ignored (logged). It may be called before or during Run.
func (r *Responder) SetOwned(owned map[netip.Addr][]string) {
	cp := make(map[netip.Addr][]string, len(owned))
	for a, ifs := range owned {
		if !a.IsValid() {
			continue
		}
		a = a.Unmap()
		cp[a] = append(cp[a], ifs...)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.owned = cp
	for a, ifs := range cp {
		for _, n := range ifs {
			if !r.ifaces[n] {
				r.log.Warn("VIP owned on an interface that is not a layer2 interface; not answered there", "vip", a, "iface", n)
			}
		}
	}
	if r.running {
		for _, p := range r.ports {
			r.applyOwnedLocked(p)
		}
	}
}

// Owned returns the VIPs answered on iface now (sorted), for status output
// and tests.
func (r *Responder) Owned(iface string) []netip.Addr {
	r.mu.Lock()
	p := r.ports[iface]
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	m := p.owned.Load()
	if m == nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(*m))
	for a := range *m {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Run opens the declared interfaces and answers until ctx ends; then it
// closes the sockets (so nothing is answered any more) and returns. The
// sysctls stay as set until Close, so a restarting agent does not open a
// window in which the kernel answers for every VIP.
func (r *Responder) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return errors.New("dataplane responder: closed")
	}
	if r.running {
		r.mu.Unlock()
		return errors.New("dataplane responder: already running")
	}
	r.running, r.runCtx = true, ctx
	r.mu.Unlock()
	corr := r.startCorrector(ctx)
	r.mu.Lock()
	r.corr.Store(corr)
	r.syncLocked()
	r.mu.Unlock()

	t := time.NewTicker(r.sync)
	defer t.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-t.C:
			r.mu.Lock()
			r.syncLocked()
			r.mu.Unlock()
		}
	}
	r.mu.Lock()
	for name, p := range r.ports {
		r.closePortLocked(p)
		delete(r.ports, name)
	}
	r.running = false
	if c := r.corr.Load(); c != nil {
		c.stopAll()
	}
	r.mu.Unlock()
	r.wg.Wait()
	r.mu.Lock()
	if c := r.corr.Load(); c != nil {
		c.close()
	}
	r.corr.Store(nil)
	r.mu.Unlock()
	return nil
}

// Close stops answering and puts back the sysctls the responder changed
// (only where they still hold the value it wrote). Call it only once the
// layer2 VIPs are gone from this node's VIP interface: with arp_ignore back
// at 0 the kernel answers ARP for every address it holds, on every
// interface. An agent that stops while its VIPs stay (a restart, a plain
// SIGTERM: the VIP table is kept by design) should Detach instead.
func (r *Responder) Close() error {
	return r.close(true)
}

// Detach stops answering but leaves the sysctls as they are and their
// original values in Options.StateFile, for an agent that restarts: the
// kernel must not answer for the VIPs while it is away, and the next agent
// restores the originals when it closes for good.
func (r *Responder) Detach() error {
	return r.close(false)
}

func (r *Responder) close(restore bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	for name, p := range r.ports {
		r.closePortLocked(p)
		delete(r.ports, name)
	}
	if !restore {
		r.log.Info("detached; arp_ignore/arp_announce stay set for the next agent", "state", r.stateFile)
		return nil
	}
	var errs []error
	for name := range r.saved {
		if err := r.restoreLocked(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// syncLocked opens declared interfaces that are not open, reopens broken
// or changed ones, and closes (and restores) undeclared ones.
func (r *Responder) syncLocked() {
	if r.closed || !r.running {
		return
	}
	for name, p := range r.ports {
		if !r.ifaces[name] {
			r.log.Info("layer2 interface no longer configured; closing", "iface", name)
			r.closePortLocked(p)
			delete(r.ports, name)
			if err := r.restoreLocked(name); err != nil {
				r.log.Error("restore sysctls", "iface", name, "err", err)
			}
			continue
		}
		if p.broken.Load() || r.changedLocked(p) {
			r.log.Info("layer2 interface changed or failed; reopening", "iface", name)
			r.closePortLocked(p)
			delete(r.ports, name)
		}
	}
	names := make([]string, 0, len(r.ifaces))
	for n := range r.ifaces {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		if r.ports[name] != nil {
			continue
		}
		p, err := r.listen(name)
		if err != nil {
			if r.openErr[name] != err.Error() {
				r.log.Warn("cannot open layer2 interface; will retry", "iface", name, "err", err)
				r.openErr[name] = err.Error()
			}
			continue
		}
		delete(r.openErr, name)
		p.groups = map[netip.Addr]bool{}
		p.conflictSeen = map[netip.Addr]time.Time{}
		p.ctx, p.cancel = context.WithCancel(r.runCtx)
		r.ports[name] = p
		r.log.Info("answering ARP/NDP on layer2 interface", "iface", name, "mac", p.mac.String())
		r.wg.Add(2)
		go r.serve(p, p.arp, r.onARP)
		go r.serve(p, p.ndp, r.onNDP)
		r.applyOwnedLocked(p)
	}
}

// changedLocked reports whether the interface behind p now has another
// index or MAC (deleted and recreated, or its address changed).
func (r *Responder) changedLocked(p *port) bool {
	var ifi *net.Interface
	err := r.enter(func() error {
		var err error
		ifi, err = net.InterfaceByName(p.name)
		return err
	})
	if err != nil {
		return true
	}
	return ifi.Index != p.index || !bytes.Equal(ifi.HardwareAddr, p.mac)
}

func (r *Responder) closePortLocked(p *port) {
	p.owned.Store(nil)
	if p.cancel != nil {
		p.cancel()
	}
	p.broken.Store(true)
	_ = p.mc.Close()
	_ = p.arp.Close()
	_ = p.ndp.Close()
	r.m.ownedVIPs.DeleteLabelValues(p.name)
	r.m.groupsJoined.DeleteLabelValues(p.name)
}

// applyOwnedLocked brings p's answered set, group memberships and
// announcements in line with r.owned.
func (r *Responder) applyOwnedLocked(p *port) {
	next := map[netip.Addr]struct{}{}
	for a, ifs := range r.owned {
		if slices.Contains(ifs, p.name) {
			next[a] = struct{}{}
		}
	}
	prevp := p.owned.Load()
	var prev map[netip.Addr]struct{}
	if prevp != nil {
		prev = *prevp
	}
	// Join the groups of new IPv6 VIPs before answering, leave those of
	// removed ones after: a solicitation never finds us deaf for a VIP we
	// answer.
	want := map[netip.Addr]bool{}
	for a := range next {
		if a.Is6() {
			g, _ := solicitedNode(a)
			want[g] = true
		}
	}
	for g := range want {
		if p.groups[g] {
			continue
		}
		if err := p.mc.Join(g); err != nil {
			r.log.Error("join solicited-node group", "iface", p.name, "group", g, "err", err)
			continue
		}
		p.groups[g] = true
	}
	p.owned.Store(&next)
	for g := range p.groups {
		if want[g] {
			continue
		}
		if err := p.mc.Leave(g); err != nil {
			r.log.Warn("leave solicited-node group", "iface", p.name, "group", g, "err", err)
		}
		delete(p.groups, g)
	}
	var added []netip.Addr
	for a := range next {
		if _, ok := prev[a]; !ok {
			added = append(added, a)
			r.log.Info("owner of VIP: answering", "vip", a, "iface", p.name)
			if c := r.corr.Load(); c != nil {
				c.reclaim(p.name, a)
			}
		}
	}
	for a := range prev {
		if _, ok := next[a]; !ok {
			r.log.Info("no longer owner of VIP: not answering", "vip", a, "iface", p.name)
			if c := r.corr.Load(); c != nil {
				c.release(p, a)
			}
		}
	}
	r.m.ownedVIPs.WithLabelValues(p.name).Set(float64(len(next)))
	r.m.groupsJoined.WithLabelValues(p.name).Set(float64(len(p.groups)))
	if len(added) > 0 && r.count > 0 {
		slices.SortFunc(added, netip.Addr.Compare)
		r.wg.Add(1)
		go r.announce(p, added)
	}
}
