package heartbeat

import (
	"strings"
	"testing"
	"time"
)

// A loop is judged once it has beaten: silent past its bound it is named,
// a new beat clears it, and a nil Beat (a part run without one) is inert.
func TestStale(t *testing.T) {
	now := time.Now()
	s := &Set{now: func() time.Time { return now }}
	table := s.Add("routing", 30*time.Second)
	bgp := s.Add("bgp", 0)
	if got := s.Stale(); len(got) != 0 {
		t.Fatalf("before any beat: %v, want none (a part waiting for its config is not wedged)", got)
	}
	table.Beat()
	bgp.Beat()
	now = now.Add(29 * time.Second)
	if got := s.Stale(); len(got) != 0 {
		t.Fatalf("within the bound: %v", got)
	}
	now = now.Add(2 * time.Second)
	table.last.Store(now.Add(-time.Second).UnixNano()) // routing beat a second ago
	got := s.Stale()
	if len(got) != 1 || !strings.HasPrefix(got[0], "bgp (no heartbeat for 3") {
		t.Fatalf("bgp silent 31 s past its 30 s default bound: %v", got)
	}
	bgp.last.Store(now.UnixNano())
	if got := s.Stale(); len(got) != 0 {
		t.Fatalf("after a beat: %v", got)
	}

	var none *Beat
	none.Beat()
	c, stop := none.Tick()
	stop()
	if c != nil {
		t.Error("a nil Beat's ticker fires")
	}
}
