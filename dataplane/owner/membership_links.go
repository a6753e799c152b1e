package owner

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// metaTimeout bounds how long SetLinks waits for memberlist to send the
// update (it stays queued after that; with the link down it cannot go).
const metaTimeout = 200 * time.Millisecond

// SetLinks publishes this node's layer2 interfaces to the other speakers
// (in its node metadata, gossiped at once) and to this node's election.
func (ms *Membership) SetLinks(l Links) {
	l = maps.Clone(l)
	if l == nil {
		l = Links{}
	}
	ms.mu.Lock()
	if ms.local.Links != nil && ms.local.Links.Equal(l) {
		ms.mu.Unlock()
		return
	}
	ms.local.Links = l
	ms.links[ms.name] = l
	list := ms.list
	ms.mu.Unlock()
	if b, _ := json.Marshal(nodeMeta{Links: l, RestartUntilMS: time.Now().UnixMilli()}); len(b) > memberlist.MetaMaxSize {
		ms.log.Warn("too many subnets on the layer2 interfaces to tell the other speakers; they see this node without subnets", "bytes", len(b), "limit", memberlist.MetaMaxSize)
	}
	ms.notify()
	if list == nil {
		return // Run sends it with the first alive message
	}
	if err := list.UpdateNode(metaTimeout); err != nil {
		ms.log.Debug("layer2 link state queued, not yet sent", "err", err)
	}
}

// Links returns the layer2 interfaces of each node that published them,
// this node's included (nodes that published none are missing).
func (ms *Membership) Links() map[string]Links {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return maps.Clone(ms.links)
}

// Rejoin joins the configured speakers that are not members now (as Run
// does every few seconds) and returns once that attempt is over. It
// returns at once when Run is not running.
func (ms *Membership) Rejoin(ctx context.Context) {
	done := make(chan struct{})
	ms.mu.Lock()
	if ms.list == nil || !ms.running {
		ms.mu.Unlock()
		return
	}
	ms.rejoined = append(ms.rejoined, done)
	ms.mu.Unlock()
	select {
	case ms.rejoin <- struct{}{}:
	default:
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// observeLinks records another node's links and logs what changed; ms.mu
// is held.
func (ms *Membership) observeLinks(node string, l Links) {
	prev := ms.links[node]
	for _, name := range slices.Sorted(maps.Keys(l)) {
		was, known := prev[name]
		if now := l[name]; (!known && !now.Up) || (known && was.Up != now.Up) {
			ms.log.Info("speaker's layer2 interface changed", "node", node, "iface", name, "up", now.Up)
		}
	}
	if l == nil {
		delete(ms.links, node)
		return
	}
	ms.links[node] = l
}

// withoutPrefixes is l with only the up/down states.
func withoutPrefixes(l Links) Links {
	out := make(Links, len(l))
	for name, s := range l {
		out[name] = Link{Up: s.Up}
	}
	return out
}
