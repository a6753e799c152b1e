package bgp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/server"
	"github.com/prometheus/client_golang/prometheus"
)

// ZebraRecovery is what RunZebraGuard does once a lost zebra is back.
type ZebraRecovery int

const (
	// RestartSpeaker restarts the embedded speaker under graceful restart.
	// It reconnects and refreshes every route, but GoBGP v4.8.0 leaks the
	// old zebra client's loop, which keeps spinning a CPU until the
	// process ends (its receive channel is closed and its stop channel is
	// never closed).
	RestartSpeaker ZebraRecovery = iota
	// ReturnError makes RunZebraGuard return ErrZebraLost, so the caller
	// can restart the whole process (for example exit and let systemd or
	// the kubelet start it again, peers keeping the routes through
	// graceful restart): the only way to end the spin.
	ReturnError
)

// ErrZebraLost is returned by RunZebraGuard with ReturnError.
var ErrZebraLost = errors.New("zebra connection lost; GoBGP's zebra client cannot reconnect")

// ZebraGuardOptions configure RunZebraGuard. The zero value means defaults.
type ZebraGuardOptions struct {
	// Recovery: RestartSpeaker (default) or ReturnError.
	Recovery ZebraRecovery
	// Interval between checks of zebra's socket (default 250 ms; a stat
	// call each).
	Interval time.Duration
}

const zebraReconnectsHelp = "Restarts of the BGP speaker (under graceful restart) that reconnected it to zebra after the connection was lost."

// RunZebraGuard watches the zebra socket of the running config
// ([zebra.config] url "unix:PATH") until ctx is cancelled. GoBGP v4.8.0's
// zebra client never reconnects: when zebra goes away it spins a CPU and
// the speaker no longer hears of connected routes (in zebra mode, the VIPs)
// nor installs learned routes. The guard notices zebra's socket being
// replaced (a restarted zebra binds a new one) or gone, and as soon as a
// zebra accepts connections on it again, restarts the speaker under
// graceful restart: peers keep our routes (with graceful restart
// configured on both sides), the new speaker connects to the new zebra,
// and the routes are refreshed. Each such restart is logged and counted in
// vipspeaker_zebra_reconnects_total. See ZebraRecovery for the CPU spin
// GoBGP leaves behind, and ReturnError to end it by restarting the process.
//
// Without zebra in the config the guard idles. A zebra url over TCP is not
// watched (logged once).
//
// Limit: the socket seen at the first check after a speaker (re)start is
// taken as the one it connected to, so a zebra restart within Interval of
// the speaker's start goes unnoticed.
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
	log := s.log.With("component", "zebra")
	var (
		watched  *server.BgpServer // the instance whose socket inode is known
		ino      sockID
		path     string
		tcpNoted bool
		down     bool
	)
	t := time.NewTicker(opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.opMu.Lock()
		if s.stopped || s.cur == nil {
			s.opMu.Unlock()
			continue
		}
		z := s.cur.set.Zebra.Config
		b := s.bgp
		s.opMu.Unlock()
		if !z.Enabled {
			watched = nil
			continue
		}
		p, ok := zebraSocket(z.Url)
		if !ok {
			if !tcpNoted {
				log.Info("zebra url is not a unix socket: lost connections are not detected", "url", z.Url)
				tcpNoted = true
			}
			continue
		}
		cur, exists := socketID(p)
		if b != nil && (b != watched || p != path) {
			// a new speaker (start, config restart, or ours): it has just
			// connected to the socket that is there now
			watched, ino, path, down = b, cur, p, false
			log.Info("watching zebra's socket", "socket", p)
			continue
		}
		if b != nil && exists && cur == ino {
			continue // same zebra
		}
		if !exists || !zebraAccepts(p) {
			if !down {
				log.Warn("zebra is gone: waiting for it to come back", "socket", p)
				down = true
			}
			continue
		}
		if opts.Recovery == ReturnError {
			log.Error("zebra connection lost (zebra restarted): the agent must restart", "socket", p)
			return fmt.Errorf("%s: %w", p, ErrZebraLost)
		}
		log.Warn("zebra connection lost (zebra restarted): restarting the BGP speaker under graceful restart", "socket", p)
		if err := s.restartForZebra(ctx); err != nil {
			log.Error("restart the BGP speaker for zebra; retrying", "err", err)
			continue
		}
		reconnects.Inc()
		log.Info("reconnected to zebra", "socket", p)
	}
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
	for a, v := range s.vips {
		p, err := vipPath(v, s.nh6)
		if err != nil {
			delete(s.vips, a)
			delete(s.paths, a)
			continue
		}
		s.paths[a] = p
	}
	add := make([]*apiutil.Path, 0, len(s.paths))
	for _, p := range s.paths {
		add = append(add, p)
	}
	s.pushPaths(add, nil)
	if !s.peersAdded {
		return nil
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
