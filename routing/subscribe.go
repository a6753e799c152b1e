package routing

import "sync"

// Subscription delivers the table's changes to one consumer. It never
// blocks the table: events queue up until the consumer calls Next, so a slow
// subscriber costs memory, not latency for the others.
//
//	sub := table.Subscribe()
//	defer sub.Close()
//	for {
//		select {
//		case <-ctx.Done():
//			return
//		case <-sub.Ready():
//			for _, ev := range sub.Next() { ... }
//		}
//	}
type Subscription struct {
	mu     sync.Mutex
	queue  []Event
	ready  chan struct{}
	closed bool
	remove func()
}

func newSubscription() *Subscription {
	return &Subscription{ready: make(chan struct{}, 1)}
}

// Ready is signalled whenever Next has something to return.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Next returns the queued events in order and empties the queue. The first
// call returns an Added event for every VIP present when Subscribe was
// called.
func (s *Subscription) Next() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = nil
	return q
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.queue = nil
	s.mu.Unlock()
	if s.remove != nil {
		s.remove()
	}
}

func (s *Subscription) push(evs []Event) {
	if len(evs) == 0 {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.queue = append(s.queue, evs...)
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// hub fans events out to subscriptions.
type hub struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

func (h *hub) add(s *Subscription, snapshot []Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = make(map[*Subscription]struct{})
	}
	h.subs[s] = struct{}{}
	s.remove = func() {
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
	}
	s.push(snapshot)
}

func (h *hub) publish(evs []Event) {
	if len(evs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.push(evs)
	}
}
