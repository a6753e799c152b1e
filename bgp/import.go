package bgp

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// ImportFunc receives the routes learned from peers: the next hops of the
// prefix's best path and the paths equal to it (ECMP), or withdrawn set
// when no usable path is left. It is called from one goroutine, never
// concurrently, and only when what it was last told changes.
type ImportFunc func(prefix netip.Prefix, nexthops []netip.Addr, withdrawn bool)

// ImportOptions configure RunImport. The zero value means defaults.
type ImportOptions struct {
	// StaleTime is how long, after the speaker was restarted, a route
	// reported before is kept when the new speaker has not learned it
	// again (default 120 s, FRR's and GoBGP's restart-time).
	StaleTime time.Duration
}

// RunImport follows the best paths of the running speaker, for IPv4 and
// IPv6 unicast prefixes learned from peers (our own VIP paths are never
// reported), and tells fn until ctx is cancelled. Paths rejected by the
// global import policy never become best, so they are never reported.
//
// ECMP: the next hops are those of the best path and of every other path
// of the prefix that equals it in local preference, AS-path length,
// origin, MED and neighbouring AS (the usual multipath rule).
//
// When the speaker is restarted (a config change of global or zebra, or
// the zebra guard), the watch moves to the new instance; routes it does not
// learn again within StaleTime are reported withdrawn. At return nothing
// is withdrawn: the caller decides whether the kernel keeps the routes
// (graceful restart) or not.
func (s *Server) RunImport(ctx context.Context, fn ImportFunc, opts ImportOptions) error {
	if opts.StaleTime == 0 {
		opts.StaleTime = 120 * time.Second
	}
	w := &importWatch{
		fn:       fn,
		log:      s.log.With("component", "import"),
		reported: make(map[netip.Prefix][]netip.Addr),
		stale:    make(map[netip.Prefix]time.Time),
		dirty:    make(map[netip.Prefix]struct{}),
		kick:     make(chan struct{}, 1),
	}
	var (
		cur       *server.BgpServer
		stopWatch context.CancelFunc = func() {}
	)
	defer func() { stopWatch() }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if b := s.running.Load(); b != cur && b != nil {
			stopWatch()
			wctx, cancel := context.WithCancel(ctx)
			stopWatch = cancel
			// Best-path events alone miss a change of the ECMP set that
			// leaves the best path alone, so updates and locally made
			// withdrawals (peer down, graceful-restart expiry) are
			// watched too; all of them only say which prefixes to look
			// up again.
			if err := b.WatchEvent(wctx, server.WatchEventMessageCallbacks{
				OnBestPath:   w.onPaths,
				OnPathUpdate: w.onPaths,
				OnPeerUpdate: w.onPeer,
			}, server.WatchBestPath(true), server.WatchUpdate(false, "", ""), server.WatchAdjInWithdraw(), server.WatchPeer()); err != nil {
				cancel()
				w.log.Warn("watch best paths", "err", err)
			} else {
				if cur != nil {
					now := time.Now()
					for p := range w.reported {
						w.stale[p] = now
					}
					w.log.Info("speaker restarted: imported routes kept until relearned", "routes", len(w.reported))
				}
				cur = b
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
			if cur != nil {
				w.refresh(cur)
			}
		case <-tick.C:
			w.expire(opts.StaleTime)
		}
	}
}

type importWatch struct {
	fn  ImportFunc
	log *slog.Logger

	mu    sync.Mutex
	dirty map[netip.Prefix]struct{} // touched by events, not yet looked up
	all   bool                      // look up every reported prefix again
	kick  chan struct{}

	// only the RunImport goroutine touches these
	reported map[netip.Prefix][]netip.Addr
	stale    map[netip.Prefix]time.Time
}

// onPeer marks every prefix reported so far for a new look-up when a
// session changes state.
func (w *importWatch) onPeer(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	w.mu.Lock()
	w.all = true
	w.mu.Unlock()
	w.poke()
}

func (w *importWatch) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// onPaths runs in GoBGP's watcher goroutine: it only notes the prefixes.
func (w *importWatch) onPaths(paths []*apiutil.Path, _ time.Time) {
	w.mu.Lock()
	for _, p := range paths {
		if p.Family != bgppkt.RF_IPv4_UC && p.Family != bgppkt.RF_IPv6_UC {
			continue
		}
		pre, err := netip.ParsePrefix(p.Nlri.String())
		if err != nil {
			continue
		}
		w.dirty[pre] = struct{}{}
	}
	w.mu.Unlock()
	w.poke()
}

// refresh looks up each dirty prefix in the speaker's RIB and reports what
// changed.
func (w *importWatch) refresh(b *server.BgpServer) {
	w.mu.Lock()
	dirty := w.dirty
	w.dirty = make(map[netip.Prefix]struct{})
	all := w.all
	w.all = false
	w.mu.Unlock()
	if all {
		for pre := range w.reported {
			dirty[pre] = struct{}{}
		}
	}
	for pre := range dirty {
		fam := bgppkt.RF_IPv4_UC
		if pre.Addr().Is6() {
			fam = bgppkt.RF_IPv6_UC
		}
		var paths []*apiutil.Path
		err := b.ListPath(apiutil.ListPathRequest{
			TableType: api.TableType_TABLE_TYPE_GLOBAL,
			Family:    fam,
			Prefixes:  []*apiutil.LookupPrefix{{Prefix: pre.String(), LookupOption: apiutil.LOOKUP_EXACT}},
		}, func(_ bgppkt.NLRI, ps []*apiutil.Path) { paths = append(paths, ps...) })
		if err != nil {
			// the instance is going away; the next one's snapshot covers it
			w.log.Warn("look up best path", "prefix", pre, "err", err)
			continue
		}
		w.report(pre, multipathNextHops(paths))
	}
}

func (w *importWatch) report(pre netip.Prefix, nhs []netip.Addr) {
	if len(nhs) > 0 {
		delete(w.stale, pre)
	}
	old, had := w.reported[pre]
	switch {
	case len(nhs) == 0 && !had:
	case len(nhs) == 0:
		delete(w.reported, pre)
		delete(w.stale, pre)
		w.fn(pre, nil, true)
	case had && slices.Equal(old, nhs):
	default:
		w.reported[pre] = nhs
		w.fn(pre, slices.Clone(nhs), false)
	}
}

// expire withdraws the routes not relearned within d of a restart.
func (w *importWatch) expire(d time.Duration) {
	for pre, since := range w.stale {
		if time.Since(since) < d {
			continue
		}
		delete(w.stale, pre)
		delete(w.reported, pre)
		w.fn(pre, nil, true)
	}
}

// multipathNextHops returns the sorted next hops of the best path learned
// from a peer and of the paths equal to it; none when the best path is ours
// or there is none.
func multipathNextHops(paths []*apiutil.Path) []netip.Addr {
	var best *apiutil.Path
	for _, p := range paths {
		if p.Best && !p.Withdrawal {
			best = p
			break
		}
	}
	if best == nil || !fromPeer(best) {
		return nil
	}
	bk := pathRank(best)
	var nhs []netip.Addr
	for _, p := range paths {
		if p.Withdrawal || p.Filtered || !fromPeer(p) || pathRank(p) != bk {
			continue
		}
		if nh := pathNextHop(p); nh.IsValid() && !nh.IsUnspecified() {
			nhs = append(nhs, nh)
		}
	}
	slices.SortFunc(nhs, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(nhs)
}

// fromPeer: learned over a session, not added locally (our VIPs).
func fromPeer(p *apiutil.Path) bool {
	return !p.IsFromExternal && p.PeerAddress.IsValid() && !p.PeerAddress.IsUnspecified()
}

// rank is what two paths must share to be used together.
type rank struct {
	localPref, med uint32
	asLen          int
	origin         uint8
	firstAS        uint32
}

func pathRank(p *apiutil.Path) rank {
	r := rank{localPref: 100}
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgppkt.PathAttributeLocalPref:
			r.localPref = a.Value
		case *bgppkt.PathAttributeMultiExitDisc:
			r.med = a.Value
		case *bgppkt.PathAttributeOrigin:
			r.origin = a.Value
		case *bgppkt.PathAttributeAsPath:
			for _, seg := range a.Value {
				if r.asLen == 0 && len(seg.GetAS()) > 0 {
					r.firstAS = seg.GetAS()[0]
				}
				r.asLen += seg.ASLen()
			}
		}
	}
	return r
}

// pathNextHop is the path's next hop (the global one of an IPv6 path).
func pathNextHop(p *apiutil.Path) netip.Addr {
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgppkt.PathAttributeNextHop:
			return a.Value
		case *bgppkt.PathAttributeMpReachNLRI:
			return a.Nexthop
		}
	}
	return netip.Addr{}
}
