package config

import (
	"slices"

	"github.com/vipspeaker/vipspeaker/routing"
)

// Layer2Interfaces is the union of the layer2 pools' interfaces, sorted.
func (c *Config) Layer2Interfaces() []string {
	var out []string
	for _, p := range c.Pools {
		if p.Mode == routing.ModeLayer2 {
			out = append(out, p.Layer2.Interfaces...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// WithPools fills in each VIP's pool (when the Service did not name one)
// and mode (when the Service did not ask for one) from the pools; a VIP of
// no pool gets bgp mode.
func (c *Config) WithPools(vips []routing.VIP) []routing.VIP {
	out := make([]routing.VIP, len(vips))
	for i, v := range vips {
		p := c.Pool(v.Attrs.Pool)
		if p == nil {
			p = c.PoolOf(v.Addr)
		}
		if p != nil {
			if v.Attrs.Pool == "" {
				v.Attrs.Pool = p.Name
			}
			if v.Attrs.Mode == "" {
				v.Attrs.Mode = p.Mode
			}
		}
		if v.Attrs.Mode == "" {
			v.Attrs.Mode = routing.ModeBGP
		}
		out[i] = v
	}
	return out
}
