package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ProtoBGP is the kernel's routing protocol number for BGP (RTPROT_BGP);
// `ip route show proto bgp` lists the routes the Importer installs.
const ProtoBGP = unix.RTPROT_BGP

// ImportOptions configure an Importer. The zero value is usable: the
// caller's network namespace, the main table, slog.Default.
type ImportOptions struct {
	// NetnsPath, when set, is the network namespace (a path such as
	// /var/run/netns/NAME) whose kernel gets the routes.
	NetnsPath string
	// Table is the kernel routing table (default 254, main).
	Table int
	// Logger receives one line per failed route change.
	Logger *slog.Logger
}

// Importer writes best paths learned over BGP into a kernel routing table
// with protocol bgp: one route per prefix, a multipath route when there
// are several next hops (ECMP). It remembers what it installed, so a
// withdrawal removes the route, and Close removes them all; Release keeps
// them (graceful restart: the forwarding plane stays while the agent
// restarts, and the next run replaces them).
//
// All kernel access goes through one netlink handle bound to the namespace.
// The methods are safe for concurrent use.
type Importer struct {
	log   *slog.Logger
	table int

	mu     sync.Mutex
	h      *netlink.Handle
	ns     netns.NsHandle
	routes map[netip.Prefix][]netip.Addr // installed, next hops sorted
}

// NewImporter opens a netlink handle in the configured namespace. It
// installs nothing.
func NewImporter(opts ImportOptions) (*Importer, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Table == 0 {
		opts.Table = unix.RT_TABLE_MAIN
	}
	im := &Importer{
		log:    opts.Logger.With("component", "import"),
		table:  opts.Table,
		ns:     netns.None(),
		routes: make(map[netip.Prefix][]netip.Addr),
	}
	if opts.NetnsPath == "" {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("open netlink handle: %w", err)
		}
		im.h = h
		return im, nil
	}
	ns, err := netns.GetFromPath(opts.NetnsPath)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", opts.NetnsPath, err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("open netlink handle in %s: %w", opts.NetnsPath, err)
	}
	im.h, im.ns = h, ns
	return im, nil
}

// Route installs (or replaces) the route to prefix through the next hops.
// Next hops of the other address family and unspecified ones are left out;
// when none is left the route is withdrawn. Installing the same next hops
// again changes nothing in the kernel.
func (im *Importer) Route(prefix netip.Prefix, nexthops []netip.Addr) error {
	prefix = prefix.Masked()
	var nhs []netip.Addr
	for _, nh := range nexthops {
		nh = nh.Unmap()
		if !nh.IsValid() || nh.IsUnspecified() || nh.Is4() != prefix.Addr().Is4() {
			continue
		}
		nhs = append(nhs, nh)
	}
	slices.SortFunc(nhs, func(a, b netip.Addr) int { return a.Compare(b) })
	nhs = slices.Compact(nhs)
	if len(nhs) == 0 {
		return im.Withdraw(prefix)
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.h == nil {
		return errors.New("importer is closed")
	}
	if old, ok := im.routes[prefix]; ok && slices.Equal(old, nhs) {
		return nil
	}
	r := im.route(prefix)
	if len(nhs) == 1 {
		r.Gw = net.IP(nhs[0].AsSlice())
	} else {
		for _, nh := range nhs {
			r.MultiPath = append(r.MultiPath, &netlink.NexthopInfo{Gw: net.IP(nh.AsSlice())})
		}
	}
	if err := im.h.RouteReplace(r); err != nil {
		return fmt.Errorf("install route %s via %v: %w", prefix, nhs, err)
	}
	im.routes[prefix] = nhs
	return nil
}

// Withdraw removes the route to prefix. A route that is not there is not
// an error.
func (im *Importer) Withdraw(prefix netip.Prefix) error {
	prefix = prefix.Masked()
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.h == nil {
		return errors.New("importer is closed")
	}
	if err := im.del(prefix); err != nil {
		return err
	}
	delete(im.routes, prefix)
	return nil
}

// Update is Route, or Withdraw when withdrawn is set; it has the shape of
// the bgp package's best-path callback, and logs failures.
func (im *Importer) Update(prefix netip.Prefix, nexthops []netip.Addr, withdrawn bool) {
	var err error
	if withdrawn {
		err = im.Withdraw(prefix)
	} else {
		err = im.Route(prefix, nexthops)
	}
	if err != nil {
		im.log.Warn("kernel route not updated", "prefix", prefix, "nexthops", nexthops, "err", err)
	}
}

// Installed returns the routes the importer has installed, next hops
// sorted.
func (im *Importer) Installed() map[netip.Prefix][]netip.Addr {
	im.mu.Lock()
	defer im.mu.Unlock()
	out := make(map[netip.Prefix][]netip.Addr, len(im.routes))
	for p, nhs := range im.routes {
		out[p] = slices.Clone(nhs)
	}
	return out
}

// Stale lists the protocol-bgp routes of the table that this importer has
// not installed, for example those a previous run kept for graceful
// restart.
func (im *Importer) Stale() ([]netip.Prefix, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.h == nil {
		return nil, errors.New("importer is closed")
	}
	var out []netip.Prefix
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		filter := &netlink.Route{Table: im.table, Protocol: ProtoBGP}
		rs, err := im.h.RouteListFiltered(fam, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("list bgp routes of table %d: %w", im.table, err)
		}
		for _, r := range rs {
			if r.Dst == nil {
				continue
			}
			a, ok := netip.AddrFromSlice(r.Dst.IP)
			if !ok {
				continue
			}
			if fam == unix.AF_INET {
				a = a.Unmap()
			}
			ones, _ := r.Dst.Mask.Size()
			p := netip.PrefixFrom(a, ones)
			if _, ours := im.routes[p]; !ours {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// PruneStale removes the routes Stale lists: call it once the peers have
// sent their End-of-RIB after a restart.
func (im *Importer) PruneStale() error {
	stale, err := im.Stale()
	if err != nil {
		return err
	}
	var errs []error
	im.mu.Lock()
	defer im.mu.Unlock()
	for _, p := range stale {
		if _, ours := im.routes[p]; ours {
			continue // installed since Stale looked
		}
		if err := im.del(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close removes every route the importer installed and closes the handle.
func (im *Importer) Close() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.h == nil {
		return nil
	}
	var errs []error
	for p := range im.routes {
		if err := im.del(p); err != nil {
			errs = append(errs, err)
		}
	}
	clear(im.routes)
	im.closeLocked()
	return errors.Join(errs...)
}

// Release closes the handle and leaves the routes in the kernel (graceful
// restart).
func (im *Importer) Release() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.h == nil {
		return nil
	}
	if n := len(im.routes); n > 0 {
		im.log.Info("kernel routes kept for graceful restart", "routes", n)
	}
	im.closeLocked()
	return nil
}

func (im *Importer) closeLocked() {
	im.h.Close()
	im.h = nil
	if im.ns.IsOpen() {
		im.ns.Close()
	}
}

func (im *Importer) route(prefix netip.Prefix) *netlink.Route {
	fam := unix.AF_INET
	if prefix.Addr().Is6() {
		fam = unix.AF_INET6
	}
	return &netlink.Route{
		Dst:      &net.IPNet{IP: net.IP(prefix.Addr().AsSlice()), Mask: net.CIDRMask(prefix.Bits(), prefix.Addr().BitLen())},
		Table:    im.table,
		Protocol: ProtoBGP,
		Family:   fam,
	}
}

// del removes the protocol-bgp route to prefix; absent is fine.
func (im *Importer) del(prefix netip.Prefix) error {
	err := im.h.RouteDel(im.route(prefix))
	if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove route %s: %w", prefix, err)
	}
	return nil
}

// Hold runs the importer's lifecycle around feed (which delivers routes
// through Update until ctx ends): pruneAfter into the run the routes no
// peer sent again are removed (PruneStale); at the end every route is
// removed with removeOnExit (Close), otherwise kept for the next agent
// (Release). feed's error is returned.
func (im *Importer) Hold(ctx context.Context, pruneAfter time.Duration, removeOnExit bool, feed func(context.Context) error) error {
	defer func() {
		var err error
		if removeOnExit {
			err = im.Close()
		} else {
			err = im.Release()
		}
		if err != nil {
			im.log.Warn("kernel import: close", "error", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
		case <-time.After(pruneAfter):
			if err := im.PruneStale(); err != nil {
				im.log.Warn("kernel import: remove routes no peer sent again", "error", err)
			}
		}
	}()
	return feed(ctx)
}
