package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultInterface is the VIP interface's name when none is configured.
const DefaultInterface = "kube-lb0"

// Options configure a Table. The zero value means defaults.
type Options struct {
	// Interface is the VIP interface's name (default kube-lb0).
	Interface string
	// Kind is the link type to create: "dummy" (default) or "ifb". A
	// dummy the kernel cannot make falls back to ifb.
	Kind string
	// NetnsPath is the network namespace to work in (a path such as
	// /var/run/netns/NAME); empty means the caller's own.
	NetnsPath string
	// ResyncInterval is how often the whole interface is compared with
	// the desired set, to catch events the kernel could not deliver
	// (default 30s).
	ResyncInterval time.Duration
	// RemoveOnClose removes every VIP and the interface when the table
	// closes. Off by default, so an agent restart is hitless.
	RemoveOnClose bool
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
}

// entry is one desired VIP.
type entry struct {
	attrs Attrs
	gen   uint64
}

// Table is the node's VIP table: the host addresses of one interface.
type Table struct {
	opts    Options
	log     *slog.Logger
	k       kernel
	metrics *metrics

	ready     chan struct{}
	readyOnce sync.Once
	kindOnce  sync.Once

	mu      sync.Mutex
	index   int
	present map[netip.Addr]struct{} // on the interface, as last seen
	desired map[netip.Addr]*entry   // what must be there
	gen     uint64                  // generation of the last Set
	// dirty: an earlier change did not fully apply, so the next Set
	// compares everything instead of only what changed.
	dirty bool
	// published is what the subscribers have been told; it follows the
	// interface, so an address repaired after an outside removal is never
	// reported as removed.
	published map[netip.Addr]Attrs
	perMode   map[Mode]int // published VIPs by mode, for the gauge

	hub    hub
	writes atomic.Uint64
}

// New opens a netlink handle in the namespace and returns a table. It
// changes nothing until Run.
func New(opts Options) (*Table, error) {
	k, err := newKernel(opts.NetnsPath)
	if err != nil {
		return nil, err
	}
	return newTable(opts, k)
}

func newTable(opts Options, k kernel) (*Table, error) {
	if opts.Interface == "" {
		opts.Interface = DefaultInterface
	}
	if len(opts.Interface) > 15 {
		return nil, fmt.Errorf("interface name %q: longer than 15 characters", opts.Interface)
	}
	switch opts.Kind {
	case "":
		opts.Kind = "dummy"
	case "dummy", "ifb":
	default:
		return nil, fmt.Errorf("interface kind %q: want dummy or ifb", opts.Kind)
	}
	if opts.ResyncInterval <= 0 {
		opts.ResyncInterval = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	t := &Table{
		opts:      opts,
		log:       opts.Logger.With("component", "routing", "iface", opts.Interface),
		k:         k,
		metrics:   newMetrics(opts.Registerer),
		ready:     make(chan struct{}),
		present:   map[netip.Addr]struct{}{},
		published: map[netip.Addr]Attrs{},
		perMode:   map[Mode]int{ModeBGP: 0, ModeLayer2: 0},
	}
	// Both modes have a series from the start: dashboards show 0, not
	// "no data".
	for m := range t.perMode {
		t.metrics.vips.WithLabelValues(string(m)).Set(0)
	}
	return t, nil
}

// Interface is the VIP interface's name.
func (t *Table) Interface() string { return t.opts.Interface }

// Ready is closed once Run has set up the interface and adopted what was on
// it.
func (t *Table) Ready() <-chan struct{} { return t.ready }

// Writes is the number of netlink changes the table has made (addresses and
// links added or removed). An agent restart that adopts its VIPs makes none.
func (t *Table) Writes() uint64 { return t.writes.Load() }

// List returns the VIPs of the table, sorted by address.
func (t *Table) List() []VIP {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]VIP, 0, len(t.published))
	for a, at := range t.published {
		out = append(out, VIP{Addr: a, Attrs: at})
	}
	slices.SortFunc(out, func(a, b VIP) int { return a.Addr.Compare(b.Addr) })
	return out
}

// Subscribe starts a subscription. Its first Next returns an Added event
// for every VIP in the table now.
func (t *Table) Subscribe() *Subscription {
	s := newSubscription()
	t.mu.Lock()
	defer t.mu.Unlock()
	snap := make([]Event, 0, len(t.published))
	for _, v := range t.listLocked() {
		snap = append(snap, Event{Kind: Added, VIP: v})
	}
	t.hub.add(s, snap)
	return s
}

func (t *Table) listLocked() []VIP {
	out := make([]VIP, 0, len(t.published))
	for a, at := range t.published {
		out = append(out, VIP{Addr: a, Attrs: at})
	}
	slices.SortFunc(out, func(a, b VIP) int { return a.Addr.Compare(b.Addr) })
	return out
}

// Run creates the interface if needed, adopts the addresses already on it,
// then keeps it as desired until ctx ends: an address or the interface that
// something else removes is put back at once.
func (t *Table) Run(ctx context.Context) error {
	stop := make(chan struct{})
	defer close(stop)
	// Subscribe before looking, so nothing that happens in between is
	// missed.
	changes, err := t.k.watch(t.opts.Interface, stop)
	if err != nil {
		return err
	}
	if err := t.adopt(); err != nil {
		return err
	}
	t.readyOnce.Do(func() { close(t.ready) })

	tick := time.NewTicker(t.opts.ResyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case c, ok := <-changes:
			if !ok {
				// The event stream ended; start a new one.
				if changes, err = t.k.watch(t.opts.Interface, stop); err != nil {
					return err
				}
				t.resync("event stream restarted")
				continue
			}
			t.handle(c)
		case <-tick.C:
			t.resync("")
		}
	}
}

// relinkLocked makes sure the interface exists and is up; when it had to
// be made anew, every desired VIP goes back on it.
func (t *Table) relinkLocked() {
	old := t.index
	if err := t.setupLink(); err != nil {
		t.log.Error("restore VIP interface", "error", err)
		t.index = 0
		return
	}
	if t.index != old {
		clear(t.present)
		if errs := t.reconcileLocked(); len(errs) > 0 {
			t.log.Error("restore VIPs on the new interface", "error", errors.Join(errs...))
		}
	}
}

func (t *Table) setupLink() error {
	idx, kind, created, setUp, err := t.k.ensureLink(t.opts.Interface, t.opts.Kind)
	if err != nil {
		return err
	}
	if setUp && !created {
		t.log.Warn("VIP interface was down; set it up")
		t.metrics.repairs.WithLabelValues("link").Inc()
	}
	if created {
		t.writes.Add(1)
	}
	if kind != t.opts.Kind {
		t.kindOnce.Do(func() {
			if created {
				t.log.Warn("the kernel has no dummy link type; using ifb for the VIP interface", "kind", kind)
			} else {
				t.log.Info("the VIP interface already exists with another link type; keeping it", "kind", kind, "configured", t.opts.Kind)
			}
		})
	}
	if created {
		t.log.Info("created VIP interface", "kind", kind, "index", idx)
	}
	t.index = idx
	return nil
}

func (t *Table) adopt() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.setupLink(); err != nil {
		return err
	}
	addrs, err := t.k.listAddrs(t.index)
	if err != nil {
		return err
	}
	var evs []Event
	adopted := make(map[netip.Addr]*entry, len(addrs))
	for _, a := range addrs {
		t.present[a] = struct{}{}
		adopted[a] = &entry{}
		if _, ok := t.published[a]; !ok {
			t.setPublished(a, Attrs{})
			evs = append(evs, Event{Kind: Added, VIP: VIP{Addr: a}})
		}
	}
	if t.desired == nil {
		// Until the first Set, what is on the interface is what we keep.
		t.desired = adopted
	}
	if len(addrs) > 0 {
		t.log.Info("adopted VIPs already on the interface", "count", len(addrs))
	}
	t.hub.publish(evs)
	return nil
}

// Set makes the table hold exactly desired: adds what is missing (first),
// then removes what is no longer wanted, and publishes the changes. It waits
// for Run to be ready. Invalid entries are reported and skipped; the rest is
// applied.
func (t *Table) Set(ctx context.Context, desired []VIP) error {
	select {
	case <-t.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	start := time.Now()
	defer func() { t.metrics.reconcile.Observe(time.Since(start).Seconds()) }()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gen++
	var (
		errs          []error
		adds, changed []netip.Addr
		dels          []netip.Addr
		gen           = t.gen
		wasDirty      = t.dirty || t.index == 0
	)
	for _, v := range desired {
		a := v.Addr.Unmap()
		if !isHostAddr(a, a.BitLen()) {
			errs = append(errs, fmt.Errorf("vip %s: not a global unicast address", v.Addr))
			continue
		}
		e := t.desired[a]
		switch {
		case e == nil:
			t.desired[a] = &entry{attrs: v.Attrs, gen: gen}
			adds = append(adds, a)
			continue
		case !e.attrs.Equal(v.Attrs):
			e.attrs = v.Attrs
			if e.gen != gen {
				changed = append(changed, a)
			}
		}
		e.gen = gen
	}
	for a, e := range t.desired {
		if e.gen != gen {
			delete(t.desired, a)
			dels = append(dels, a)
		}
	}
	if wasDirty {
		errs = append(errs, t.reconcileLocked()...)
		return errors.Join(errs...)
	}
	errs = append(errs, t.applyDeltaLocked(adds, changed, dels)...)
	return errors.Join(errs...)
}

// applyDeltaLocked applies the changes of one Set: adds first, then
// removals, and publishes them. It touches only the VIPs that changed, so a
// Set against a large table costs little more than its delta.
func (t *Table) applyDeltaLocked(adds, changed, dels []netip.Addr) []error {
	var (
		errs []error
		evs  []Event
	)
	slices.SortFunc(adds, netip.Addr.Compare)
	slices.SortFunc(dels, netip.Addr.Compare)
	for _, a := range adds {
		at := t.desired[a].attrs
		if _, ok := t.present[a]; !ok {
			if err := t.k.addAddr(t.index, a); err != nil {
				errs = append(errs, fmt.Errorf("add %s to %s: %w", a, t.opts.Interface, err))
				t.dirty = true
				continue
			}
			t.writes.Add(1)
			t.present[a] = struct{}{}
		}
		if old, ok := t.published[a]; !ok {
			evs = append(evs, Event{Kind: Added, VIP: VIP{Addr: a, Attrs: at}})
			t.setPublished(a, at)
		} else if !old.Equal(at) {
			evs = append(evs, Event{Kind: Changed, VIP: VIP{Addr: a, Attrs: at}})
			t.setPublished(a, at)
		}
	}
	for _, a := range changed {
		at := t.desired[a].attrs
		if _, ok := t.published[a]; ok {
			evs = append(evs, Event{Kind: Changed, VIP: VIP{Addr: a, Attrs: at}})
			t.setPublished(a, at)
		}
	}
	for _, a := range dels {
		if _, ok := t.present[a]; ok {
			if err := t.k.delAddr(t.index, a); err != nil {
				errs = append(errs, fmt.Errorf("remove %s from %s: %w", a, t.opts.Interface, err))
				t.dirty = true
				continue
			}
			t.writes.Add(1)
			delete(t.present, a)
		}
		if at, ok := t.published[a]; ok {
			evs = append(evs, Event{Kind: Removed, VIP: VIP{Addr: a, Attrs: at}})
			t.deletePublished(a)
		}
	}
	slices.SortFunc(evs, func(a, b Event) int { return a.VIP.Addr.Compare(b.VIP.Addr) })
	t.hub.publish(evs)
	return errs
}

func (t *Table) setPublished(a netip.Addr, at Attrs) {
	if old, ok := t.published[a]; ok {
		t.perMode[modeOf(old)]--
	}
	t.published[a] = at
	m := modeOf(at)
	t.perMode[m]++
	t.metrics.vips.WithLabelValues(string(m)).Set(float64(t.perMode[m]))
}

func (t *Table) deletePublished(a netip.Addr) {
	old, ok := t.published[a]
	if !ok {
		return
	}
	delete(t.published, a)
	m := modeOf(old)
	t.perMode[m]--
	t.metrics.vips.WithLabelValues(string(m)).Set(float64(t.perMode[m]))
}

func modeOf(at Attrs) Mode {
	if at.Mode == "" {
		return ModeBGP
	}
	return at.Mode
}

// Close releases the netlink handle. With RemoveOnClose it first removes
// every VIP and the interface; otherwise the VIPs stay for the next start.
func (t *Table) Close() error {
	var errs []error
	if t.opts.RemoveOnClose {
		t.mu.Lock()
		if err := t.k.deleteLink(t.opts.Interface); err != nil {
			errs = append(errs, err)
		} else {
			t.log.Info("removed the VIP interface and its VIPs", "vips", len(t.present))
			t.writes.Add(1)
			clear(t.present)
			clear(t.desired)
			t.index = 0
			var evs []Event
			for a, at := range t.published {
				evs = append(evs, Event{Kind: Removed, VIP: VIP{Addr: a, Attrs: at}})
			}
			for a := range t.published {
				t.deletePublished(a)
			}
			t.hub.publish(evs)
		}
		t.mu.Unlock()
	}
	if err := t.k.close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
