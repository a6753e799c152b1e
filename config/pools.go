package config

import (
	"fmt"
	"net/netip"
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

// ForNode is standalone mode's share of [pools.advertise] (cluster mode
// decides it per Service, from Node labels and externalTrafficPolicy): it
// keeps the VIPs whose pool selects a node with nodeLabels and adds what
// each pool advertises; with no Local Services here, an aggregating pool
// aggregates every VIP. Run it after WithPools.
func (c *Config) ForNode(vips []routing.VIP, nodeLabels map[string]string) []routing.VIP {
	out := vips[:0:0]
	for _, v := range vips {
		p := c.Pool(v.Attrs.Pool)
		if !p.SelectsNode(nodeLabels) {
			continue
		}
		v.Attrs = p.Advertised(v.Attrs, v.Addr, false)
		out = append(out, v)
	}
	return out
}

// PoolPeers are the bgp pools whose [pools.advertise] peers name the
// neighbors their paths go to, with the prefixes that hold their
// addresses; a pool without peers goes to every neighbor and is not
// listed.
func (c *Config) PoolPeers() []routing.PoolPeers {
	var out []routing.PoolPeers
	for _, p := range c.Pools {
		if len(p.Advertise.Peers) == 0 || p.Mode != routing.ModeBGP {
			continue
		}
		pp := routing.PoolPeers{Pool: p.Name, Peers: p.Advertise.Peers}
		for _, r := range p.Blocks() {
			pp.Prefixes = append(pp.Prefixes, r.Prefixes()...)
		}
		out = append(out, pp)
	}
	return out
}

// StandaloneErrors are what standalone mode cannot do with a config that
// is otherwise valid: a layer2 pool's node-selector (the owner election
// there counts every speaker of the membership as a candidate, so a node
// left out by the selector could win a VIP it does not hold).
func (c *Config) StandaloneErrors(file string) []error {
	var errs []error
	for i, p := range c.Pools {
		if p.Mode == routing.ModeLayer2 && p.Advertise.NodeSelector != "" {
			errs = append(errs, &Error{File: file, Field: fmt.Sprintf("pools[%d].advertise.node-selector", i),
				Msg: "a layer2 pool's node-selector needs cluster mode (in standalone mode give the pool only to the nodes that should answer for it)"})
		}
	}
	return errs
}

// HiddenNeighbors are the gobgp.conf neighbors [[peer-nodes]] keeps away
// from a node with nodeLabels. With known false (cluster mode before the
// Node was read) every restricted neighbor is hidden: a session is never
// opened from a node it is not meant for.
func (c *Config) HiddenNeighbors(nodeLabels map[string]string, known bool) []netip.Addr {
	var out []netip.Addr
	for _, pn := range c.PeerNodes {
		if !known || !selectorMatches(pn.NodeSelector, nodeLabels) {
			out = append(out, pn.Neighbors...)
		}
	}
	return out
}
