// Package heartbeat lets the agent's long-lived loops show that they are
// not wedged. Each loop beats on every pass and, while idle, every
// Interval (a ticker from Beat.Tick); a Set names the loops whose last beat
// is older than their bound, which fails /healthz. A loop is judged only
// once it has beaten for the first time, so a part that waits for its
// configuration (BGP without a gobgp.conf) is not called wedged.
package heartbeat

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Interval is how often an idle loop beats.
const Interval = 5 * time.Second

// DefaultBound is how long a loop may go without a beat before it counts
// as wedged: long enough for the longest pass a loaded agent makes (a
// table Set of thousands of VIPs takes seconds), short against the
// kubelet's liveness probe.
const DefaultBound = 30 * time.Second

// Set holds the heartbeats of a process. The zero value is ready to use.
type Set struct {
	mu    sync.Mutex
	beats []*Beat
	now   func() time.Time // tests
}

// Beat is one loop's heartbeat. A nil *Beat does nothing, so parts take
// one as an optional option.
type Beat struct {
	name  string
	bound time.Duration
	last  atomic.Int64 // unix nanoseconds of the last beat; 0: none yet
}

// Add registers the loop name, which counts as wedged when it has not
// beaten for bound (0: DefaultBound).
func (s *Set) Add(name string, bound time.Duration) *Beat {
	if bound <= 0 {
		bound = DefaultBound
	}
	b := &Beat{name: name, bound: bound}
	s.mu.Lock()
	s.beats = append(s.beats, b)
	s.mu.Unlock()
	return b
}

// Beat records that the loop is alive now.
func (b *Beat) Beat() {
	if b != nil {
		b.last.Store(time.Now().UnixNano())
	}
}

// Tick returns a channel that fires every Interval, for the loop's select
// to beat when idle, and the function that stops it. A nil Beat gives a nil
// channel (never fires).
func (b *Beat) Tick() (<-chan time.Time, func()) {
	if b == nil {
		return nil, func() {}
	}
	t := time.NewTicker(Interval)
	return t.C, t.Stop
}

// Stale describes each loop that has beaten once and not within its bound
// since, sorted; empty when every loop is alive.
func (s *Set) Stale() []string {
	if s == nil {
		return nil
	}
	now := time.Now()
	if s.now != nil {
		now = s.now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, b := range s.beats {
		last := b.last.Load()
		if last == 0 {
			continue
		}
		if since := now.Sub(time.Unix(0, last)); since > b.bound {
			out = append(out, fmt.Sprintf("%s (no heartbeat for %s)", b.name, since.Round(time.Second)))
		}
	}
	slices.Sort(out)
	return out
}
