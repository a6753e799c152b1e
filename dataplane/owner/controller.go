package owner

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
)

// Health is what Controller needs of Membership.
type Health interface {
	Healthy() []string
	Changes() <-chan struct{}
	Ready() <-chan struct{}
}

// ControllerOptions configure a Controller.
type ControllerOptions struct {
	Logger *slog.Logger
	// NodeName is this node's name, as in the membership.
	NodeName string
	// Health is the speakers' membership (a *Membership).
	Health Health
	// Apply receives every VIP this node owns with its interfaces, each
	// time the set may have changed (dataplane.Responder.SetOwned).
	Apply func(owned map[netip.Addr][]string)
	// Links, when set, gives each node's layer2 interfaces (a
	// Membership's Links): nodes whose interfaces are down or lack the
	// VIP's subnet are no candidates (see Elect).
	Links func() map[string]Links
	// Checks, when set, gives each node's health check state (a
	// Membership's Checks), for the VIPs marked Checked.
	Checks func() map[string]Check
}

// Controller recomputes this node's layer2 VIPs whenever the VIPs or the
// healthy speakers change, and hands them to Apply. Until the membership is
// ready it applies nothing, so a starting node never claims every VIP.
type Controller struct {
	log    *slog.Logger
	self   string
	h      Health
	apply  func(map[netip.Addr][]string)
	links  func() map[string]Links
	checks func() map[string]Check
	kick   chan struct{}

	mu     sync.Mutex
	vips   []VIP
	owners map[netip.Addr]string
	// outside counts the VIPs this node lost to the subnet check (logged
	// when it changes).
	outside int
}

// NewController validates opts.
func NewController(opts ControllerOptions) (*Controller, error) {
	if opts.NodeName == "" || opts.Health == nil || opts.Apply == nil {
		return nil, errors.New("owner controller: node name, health and apply are required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Controller{
		log:    log.With("component", "l2-owner"),
		self:   opts.NodeName,
		h:      opts.Health,
		apply:  opts.Apply,
		links:  opts.Links,
		checks: opts.Checks,
		kick:   make(chan struct{}, 1),
	}, nil
}

// SetVIPs declares every layer2 VIP with its eligible nodes and interfaces
// (replacing the previous set).
func (c *Controller) SetVIPs(vips []VIP) {
	cp := make([]VIP, len(vips))
	for i, v := range vips {
		cp[i] = VIP{Addr: v.Addr.Unmap(), Eligible: slices.Clone(v.Eligible), Interfaces: slices.Clone(v.Interfaces), Checked: v.Checked}
	}
	c.mu.Lock()
	c.vips = cp
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Owners returns the owner of each VIP as last computed (for status).
func (c *Controller) Owners() map[netip.Addr]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.owners)
}

// Run waits for the membership to be ready, then applies on every change
// until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-c.h.Ready():
	}
	c.recompute()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
		case <-c.h.Changes():
		}
		c.recompute()
	}
}

func (c *Controller) recompute() {
	healthy := c.h.Healthy()
	c.mu.Lock()
	vips := c.vips
	c.mu.Unlock()
	var links map[string]Links
	if c.links != nil {
		links = c.links()
	}
	var checks map[string]Check
	if c.checks != nil {
		checks = c.checks()
	}
	owners, ifaces := Elect(vips, healthy, links, checks)
	mine := map[netip.Addr][]string{}
	for _, v := range vips {
		if owners[v.Addr] == c.self {
			mine[v.Addr] = ifaces[v.Addr]
		}
	}
	outside, example := c.outsideSubnets(vips, owners, links)
	c.mu.Lock()
	prev := c.owners
	c.owners = owners
	logOutside := outside != c.outside
	c.outside = outside
	c.mu.Unlock()
	switch {
	case logOutside && outside == 0:
		c.log.Info("no layer2 VIP left out for lack of its subnet any more")
	case logOutside:
		c.log.Info("not a candidate for layer2 VIPs outside the subnets of this node's interfaces (other speakers carry their subnets)", "vips", outside, "example", example)
	}
	for a, o := range owners {
		if prev[a] != o {
			c.log.Debug("layer2 owner", "vip", a, "node", o)
		}
	}
	c.apply(mine)
}

// outsideSubnets counts the VIPs this node could answer (an interface of
// theirs is up) but is no candidate for because their owner carries the
// VIP's subnet and this node does not; example is one of them.
func (c *Controller) outsideSubnets(vips []VIP, owners map[netip.Addr]string, links map[string]Links) (int, netip.Addr) {
	self := links[c.self]
	if self == nil {
		return 0, netip.Addr{}
	}
	n, example := 0, netip.Addr{}
	for _, v := range vips {
		o, ok := owners[v.Addr]
		if !ok || o == c.self || links[o] == nil || len(v.Interfaces) == 0 {
			continue
		}
		if len(usable(v, self, false)) > 0 && len(usable(v, self, true)) == 0 && len(usable(v, links[o], true)) > 0 {
			if n++; n == 1 {
				example = v.Addr
			}
		}
	}
	return n, example
}
