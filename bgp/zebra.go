package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/config/oc"
	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
	"github.com/prometheus/client_golang/prometheus"
)

// ZebraRecovery is what RunZebraGuard does when the zebra connection is
// lost.
type ZebraRecovery int

const (
	// RestartSpeaker waits until zebra is back, then restarts the embedded
	// speaker under graceful restart. It reconnects and refreshes every
	// route, but GoBGP v4.8.0 leaks the old zebra client's loop, which
	// keeps spinning a CPU until the process ends (its receive channel is
	// closed and its stop channel is never closed).
	RestartSpeaker ZebraRecovery = iota
	// ReturnError makes RunZebraGuard return ErrZebraLost as soon as the
	// loss is seen, so the caller can replace the process (the agent
	// re-executes itself; peers keep the routes through graceful restart):
	// the only way to end GoBGP's spinning goroutine.
	ReturnError
)

// ErrZebraLost is returned by RunZebraGuard with ReturnError.
var ErrZebraLost = errors.New("zebra connection lost; GoBGP's zebra client cannot reconnect")

// ZebraGuardOptions configure RunZebraGuard. The zero value means defaults.
type ZebraGuardOptions struct {
	// Recovery: RestartSpeaker (default) or ReturnError.
	Recovery ZebraRecovery
	// Interval between checks of zebra's socket (default 250 ms; a stat
	// call each). A connection GoBGP sees closing is noticed at once,
	// without waiting for a check.
	Interval time.Duration
	// PriorReconnects is the count of recoveries made before this process
	// started (carried across a re-execution); the metric starts there,
	// and when it is not zero the first speaker seen with zebra is logged
	// as reconnected.
	PriorReconnects uint64
}

const zebraReconnectsHelp = "Recoveries from a lost zebra connection: re-executions of the agent (ReturnError) or restarts of the BGP speaker under graceful restart (RestartSpeaker)."

// RunZebraGuard watches the zebra connection of the running config
// ([zebra.config]) until ctx is cancelled. GoBGP v4.8.0's zebra client
// never reconnects: when zebra goes away it spins a CPU and the speaker no
// longer hears of connected routes (in zebra mode, the VIPs) nor installs
// learned routes. The guard notices the loss from GoBGP's own log record of
// the failed read on the zebra connection (at once), or from zebra's
// socket ([zebra.config] url "unix:PATH") being replaced or gone (checked
// every Interval), and recovers as opts.Recovery says. Each recovery is
// logged and counted in vipspeaker_zebra_reconnects_total.
//
// Without zebra in the config the guard idles. A zebra url over TCP is
// watched through GoBGP's log only.
func (s *Server) RunZebraGuard(ctx context.Context, opts ZebraGuardOptions) error {
	if opts.Interval == 0 {
		opts.Interval = 250 * time.Millisecond
	}
	reconnects := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vipspeaker_zebra_reconnects_total",
		Help: zebraReconnectsHelp,
	})
	if r := s.opts.Registerer; r != nil {
		if err := r.Register(reconnects); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return fmt.Errorf("register zebra metrics: %w", err)
			}
			if c, ok := are.ExistingCollector.(prometheus.Counter); ok {
				reconnects = c
			}
		}
	}
	reconnects.Add(float64(opts.PriorReconnects))
	log := s.log.With("component", "zebra")
	var (
		watched  *server.BgpServer // the instance whose socket is known
		ino      sockID
		path     string
		tcpNoted bool
		lost     bool // waiting for zebra to come back (RestartSpeaker)
		down     bool // said so
		first    = true
	)
	t := time.NewTicker(opts.Interval)
	defer t.Stop()
	for {
		byLog := false
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.zebraLost:
			byLog = true
		}
		s.opMu.Lock()
		if s.stopped || s.cur == nil {
			s.opMu.Unlock()
			continue
		}
		z := s.cur.set.Zebra.Config
		b := s.bgp
		s.opMu.Unlock()
		if !z.Enabled || b == nil {
			watched = nil
			continue
		}
		p, unix := zebraSocket(z.Url)
		if !unix && !tcpNoted {
			log.Info("zebra url is not a unix socket: a lost connection is seen in GoBGP's log only", "url", z.Url)
			tcpNoted = true
		}
		if b != watched || p != path {
			// a new speaker (start, config restart, or ours): it has just
			// connected to the socket that is there now
			watched, path, lost, down = b, p, false, false
			if unix {
				ino, _ = socketID(p)
			}
			if first && opts.PriorReconnects > 0 {
				log.Info("reconnected to zebra", "url", z.Url, "reconnects", opts.PriorReconnects)
			} else {
				log.Info("watching zebra's connection", "url", z.Url)
			}
			first = false
			if !byLog {
				continue
			}
		}
		if !lost {
			if unix {
				cur, exists := socketID(p)
				lost = !exists || cur != ino
			}
			lost = lost || byLog
			if !lost {
				continue
			}
			if opts.Recovery == ReturnError {
				// the caller says what it does about it
				return fmt.Errorf("%s: %w", z.Url, ErrZebraLost)
			}
		}
		if unix && !zebraAccepts(p) {
			if !down {
				log.Warn("zebra connection lost: waiting for zebra to come back", "socket", p)
				down = true
			}
			continue
		}
		log.Warn("zebra connection lost: restarting the BGP speaker under graceful restart", "url", z.Url)
		if err := s.restartForZebra(ctx); err != nil {
			log.Error("restart the BGP speaker for zebra; retrying", "err", err)
			continue
		}
		reconnects.Inc()
		log.Info("reconnected to zebra", "url", z.Url)
	}
}

// noteZebraLog tells RunZebraGuard when GoBGP logs that reading from zebra
// failed after its client had connected: the client's receive loop has
// ended, and from then on GoBGP's zebra loop spins.
func (s *Server) noteZebraLog(r slog.Record) {
	if !s.zebraUp.Load() || r.Level < slog.LevelWarn {
		return
	}
	switch {
	case strings.HasPrefix(r.Message, "failed to read"), r.Message == "failed to decode header",
		strings.HasPrefix(r.Message, "ZAPI version mismatch"):
	default:
		return
	}
	zebra := false
	r.Attrs(func(a slog.Attr) bool {
		zebra = a.Key == "Topic" && a.Value.String() == "Zebra"
		return !zebra
	})
	if !zebra {
		return
	}
	s.zebraUp.Store(false)
	select {
	case s.zebraLost <- struct{}{}:
	default:
	}
}

// zebraModeLocked reports whether the running config has [zebra.config]
// enabled: then the VIP paths are zebra's redistribution of the VIP
// interface's connected routes, and the native feed (pushPaths) adds none.
// Callers hold opMu.
func (s *Server) zebraModeLocked() bool { return s.cur != nil && s.cur.set.Zebra.Config.Enabled }

// zebraVIPWait bounds how long a (re)started speaker in zebra mode waits
// for zebra to redistribute the VIPs before it adds its peers.
var zebraVIPWait = 10 * time.Second

// waitZebraVIPs waits, in zebra mode, until the RIB holds a path for every
// VIP known to the table (zebra has redistributed them), or zebraVIPWait
// passed. Peers added before would get the restarting speaker's End-of-RIB
// without the VIPs and drop the routes graceful restart kept.
func (s *Server) waitZebraVIPs(ctx context.Context) {
	s.opMu.Lock()
	b := s.bgp
	if b == nil || !s.zebraModeLocked() {
		s.opMu.Unlock()
		return
	}
	want := make(map[netip.Prefix]bool, len(s.vips))
	for _, v := range s.vips {
		want[v.Prefix()] = true
	}
	s.opMu.Unlock()
	start, n := time.Now(), len(want)
	missing := waitPaths(ctx, b, want, zebraVIPWait)
	if len(missing) > 0 {
		s.log.Warn("zebra has not redistributed every VIP; adding peers anyway", "component", "zebra",
			"missing", len(missing), "example", missing[0], "waited", time.Since(start).Round(time.Millisecond))
		return
	}
	if n > 0 {
		s.log.Info("zebra redistributed the VIPs", "component", "zebra", "vips", n,
			"waited", time.Since(start).Round(time.Millisecond))
	}
}

// waitPaths polls the global RIB of b until it has a path for every prefix
// of want or within passed; it returns the prefixes still missing. It
// deletes the prefixes found from want.
func waitPaths(ctx context.Context, b *server.BgpServer, want map[netip.Prefix]bool, within time.Duration) []netip.Prefix {
	deadline := time.Now().Add(within)
	for {
		for _, fam := range []bgppkt.Family{bgppkt.RF_IPv4_UC, bgppkt.RF_IPv6_UC} {
			_ = b.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: fam},
				func(n bgppkt.NLRI, ps []*apiutil.Path) {
					if p, err := netip.ParsePrefix(n.String()); err == nil && len(ps) > 0 {
						delete(want, p)
					}
				})
		}
		if len(want) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	missing := make([]netip.Prefix, 0, len(want))
	for p := range want {
		missing = append(missing, p)
	}
	slices.SortFunc(missing, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return missing
}

// zebraNextHop6Policy names the export policy the speaker adds in zebra mode
// (see addZebraNextHop6).
const zebraNextHop6Policy = "vipspeaker-zebra-ipv6-next-hop"

// addZebraNextHop6 gives, in zebra mode, the IPv6 paths zebra redistributes
// the node's IPv6 next hop cfg.nh6, as the native feed does for its own
// paths (vipPath): a connected route comes from zebra without a usable
// next hop, and GoBGP would then send an IPv4 session's address as an
// IPv4-mapped IPv6 next hop that FRR does not install. It is an export
// policy without a verdict, placed first in the global export list, so the
// configured policies still decide. Nothing is added when every session
// carrying IPv6 is itself IPv6 (nh6 unspecified: each session's own
// address is right). Calling it again on the same config changes nothing.
func addZebraNextHop6(cfg *parsedConfig) {
	if !cfg.set.Zebra.Config.Enabled || !cfg.nh6.IsValid() || cfg.nh6.IsUnspecified() {
		return
	}
	for _, p := range cfg.set.PolicyDefinitions {
		if p.Name == zebraNextHop6Policy {
			return
		}
	}
	cfg.set.PolicyDefinitions = append(cfg.set.PolicyDefinitions, oc.PolicyDefinition{
		Name: zebraNextHop6Policy,
		Statements: []oc.Statement{{
			Name: zebraNextHop6Policy, // statement names are global in GoBGP
			Conditions: oc.Conditions{BgpConditions: oc.BgpConditions{
				AfiSafiInList: []oc.AfiSafiType{oc.AFI_SAFI_TYPE_IPV6_UNICAST},
				RouteType:     oc.ROUTE_TYPE_LOCAL,
			}},
			Actions: oc.Actions{
				RouteDisposition: oc.ROUTE_DISPOSITION_NONE,
				BgpActions:       oc.BgpActions{SetNextHop: oc.BgpNextHopType(cfg.nh6.String())},
			},
		}},
	})
	ap := &cfg.set.Global.ApplyPolicy.Config
	ap.ExportPolicyList = append([]string{zebraNextHop6Policy}, ap.ExportPolicyList...)
}

// zebraSocket returns the socket path of a "unix:PATH" url.
func zebraSocket(url string) (string, bool) {
	if url == "" {
		return "/var/run/frr/zserv.api", true // GoBGP's default
	}
	p, ok := strings.CutPrefix(url, "unix:")
	return p, ok && p != ""
}

// sockID tells one socket file from its successor. The inode number alone
// does not: on ext4 a socket re-created at once often gets the number of
// the one just removed; the change time differs.
type sockID struct {
	ino   uint64
	ctime int64 // ns
}

func socketID(p string) (sockID, bool) {
	fi, err := os.Stat(p)
	if err != nil {
		return sockID{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return sockID{}, false
	}
	return sockID{ino: st.Ino, ctime: st.Ctim.Sec*1e9 + st.Ctim.Nsec}, true
}

// zebraAccepts reports whether something listens on the socket.
func zebraAccepts(p string) bool {
	c, err := net.DialTimeout("unix", p, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// restartForZebra replaces the GoBGP instance with one built from the
// running config, keeping the peers' routes: sessions with graceful restart
// are closed without a NOTIFICATION and come back with the restart bit, and
// the VIP paths are in the new RIB before the peers are added.
func (s *Server) restartForZebra(ctx context.Context) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.stopped || s.cur == nil {
		return nil
	}
	if old := s.bgp; old != nil {
		gr := false
		for _, n := range s.cur.set.Neighbors {
			gr = gr || n.GracefulRestart.Config.Enabled
		}
		sctx, cancel := context.WithTimeout(ctx, s.opts.ShutdownTimeout)
		if err := old.StopBgp(sctx, &api.StopBgpRequest{AllowGracefulRestart: gr}); err != nil {
			s.log.Warn("stop bgp", "err", err)
		}
		cancel()
		s.quiet.Store(true)
		old.Stop()
		s.quiet.Store(false)
		s.bgp = nil
		s.running.Store(nil)
	}
	if err := s.startLocked(ctx, s.cur); err != nil {
		return err
	}
	s.pushPaths(s.rebuildAllLocked(), nil)
	if !s.peersAdded {
		return nil
	}
	if s.zebraModeLocked() {
		want := make(map[netip.Prefix]bool, len(s.vips))
		for _, v := range s.vips {
			want[v.Prefix()] = true
		}
		if missing := waitPaths(ctx, s.bgp, want, zebraVIPWait); len(missing) > 0 {
			s.log.Warn("zebra has not redistributed every VIP; adding peers anyway", "component", "zebra", "missing", len(missing))
		}
	}
	return s.addPeersLocked(ctx, true)
}

// zebraRetry is how often startWhenZebraUp tries again.
var zebraRetry = time.Second

// startWhenZebraUp is start, tried again every zebraRetry while the only
// thing missing is zebra (its socket absent or refusing, as when the agent
// starts before FRR): the agent waits and says why, instead of exiting. A
// config applied meanwhile is the one tried next. Other errors are
// returned at once.
func (s *Server) startWhenZebraUp(ctx context.Context) error {
	var last string
	for {
		s.opMu.Lock()
		cfg := s.pending
		s.opMu.Unlock()
		err := s.start(ctx)
		if err == nil {
			if last != "" {
				s.log.Info("zebra is up: bgp speaker started", "component", "zebra")
			}
			return nil
		}
		if cfg == nil || !cfg.set.Zebra.Config.Enabled || !strings.Contains(err.Error(), "enable zebra:") {
			return err
		}
		s.opMu.Lock()
		if s.pending == nil { // no newer config: try this one again
			s.pending = cfg
		}
		s.opMu.Unlock()
		if msg := err.Error(); msg != last {
			s.log.Warn("zebra is not up yet; bgp waits for it and keeps trying", "component", "zebra",
				"url", cfg.set.Zebra.Config.Url, "err", err)
			last = msg
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(zebraRetry):
		}
	}
}
