package routing

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeKernel is an in-memory kernel for the reconcile logic. It records
// every write so tests can assert on what the table asked of the kernel.
type fakeKernel struct {
	mu      sync.Mutex
	exists  bool
	index   int
	addrs   map[netip.Addr]bool
	noDummy bool
	kind    string
	ops     []string
	failAdd map[netip.Addr]error
	changes chan change
}

func newFake() *fakeKernel {
	return &fakeKernel{addrs: map[netip.Addr]bool{}, changes: make(chan change, 100)}
}

func (f *fakeKernel) ensureLink(name, kind string) (int, string, bool, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.exists {
		return f.index, f.kind, false, false, nil
	}
	if kind == "dummy" && f.noDummy {
		kind = "ifb"
	}
	f.exists, f.kind = true, kind
	f.index++
	f.ops = append(f.ops, "link "+kind)
	return f.index, kind, true, true, nil
}

func (f *fakeKernel) linkIndex(string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.exists {
		return 0, nil
	}
	return f.index, nil
}

func (f *fakeKernel) listAddrs(int) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Addr
	for a := range f.addrs {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

func (f *fakeKernel) addAddr(_ int, a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failAdd[a]; err != nil {
		return err
	}
	f.addrs[a] = true
	f.ops = append(f.ops, "add "+a.String())
	return nil
}

func (f *fakeKernel) delAddr(_ int, a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.addrs, a)
	f.ops = append(f.ops, "del "+a.String())
	return nil
}

func (f *fakeKernel) deleteLink(string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exists = false
	clear(f.addrs)
	f.ops = append(f.ops, "dellink")
	return nil
}

func (f *fakeKernel) watch(string, <-chan struct{}) (<-chan change, error) {
	return f.changes, nil
}

func (f *fakeKernel) close() error { return nil }

func (f *fakeKernel) takeOps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ops := f.ops
	f.ops = nil
	return ops
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func vips(addrs ...string) []VIP {
	var out []VIP
	for _, a := range addrs {
		out = append(out, VIP{Addr: ip(a)})
	}
	return out
}

// startFake runs a table over f and waits until it is ready.
func startFake(t *testing.T, f *fakeKernel, opts Options) *Table {
	t.Helper()
	tb, err := newTable(opts, f)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tb.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-tb.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("table never became ready")
	}
	return tb
}

func addrsOf(vs []VIP) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Addr.String())
	}
	slices.Sort(out)
	return out
}

func TestSetAddsFirstThenRemoves(t *testing.T) {
	f := newFake()
	tb := startFake(t, f, Options{})
	ctx := context.Background()
	if err := tb.Set(ctx, vips("203.0.113.1", "2001:db8::1")); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"link dummy", "add 203.0.113.1", "add 2001:db8::1"}, f.takeOps()); diff != "" {
		t.Errorf("first Set (-want +got):\n%s", diff)
	}
	if err := tb.Set(ctx, vips("203.0.113.2", "2001:db8::1")); err != nil {
		t.Fatal(err)
	}
	// Make before break: the new address goes on before the old one goes.
	if diff := cmp.Diff([]string{"add 203.0.113.2", "del 203.0.113.1"}, f.takeOps()); diff != "" {
		t.Errorf("second Set (-want +got):\n%s", diff)
	}
	// Same set again: idempotent, nothing written.
	if err := tb.Set(ctx, vips("203.0.113.2", "2001:db8::1")); err != nil {
		t.Fatal(err)
	}
	if ops := f.takeOps(); len(ops) != 0 {
		t.Errorf("repeated Set wrote %v, want nothing", ops)
	}
	if diff := cmp.Diff([]string{"2001:db8::1", "203.0.113.2"}, addrsOf(tb.List())); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

func TestAdoptWithoutWrites(t *testing.T) {
	f := newFake()
	f.exists, f.index, f.kind = true, 7, "dummy"
	f.addrs[ip("203.0.113.1")] = true
	f.addrs[ip("203.0.113.2")] = true
	tb := startFake(t, f, Options{})
	sub := tb.Subscribe()
	defer sub.Close()
	got := sub.Next()
	want := []Event{{Kind: Added, VIP: VIP{Addr: ip("203.0.113.1")}}, {Kind: Added, VIP: VIP{Addr: ip("203.0.113.2")}}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("snapshot after adoption (-want +got):\n%s", diff)
	}
	// The restarted agent wants one of the two, with attributes.
	err := tb.Set(context.Background(), []VIP{{Addr: ip("203.0.113.1"), Attrs: Attrs{Service: "default/web"}}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"del 203.0.113.2"}, f.takeOps()); diff != "" {
		t.Errorf("ops after adopt+Set (-want +got):\n%s", diff)
	}
	evs := sub.Next()
	if len(evs) != 2 || evs[0].Kind != Changed || evs[0].VIP.Attrs.Service != "default/web" || evs[1].Kind != Removed {
		t.Errorf("events after Set = %+v, want Changed 203.0.113.1 then Removed 203.0.113.2", evs)
	}
	if tb.Writes() != 1 {
		t.Errorf("Writes = %d, want 1 (only the removal)", tb.Writes())
	}
}

func TestInvalidEntriesSkipped(t *testing.T) {
	f := newFake()
	tb := startFake(t, f, Options{})
	err := tb.Set(context.Background(), []VIP{{Addr: ip("203.0.113.9")}, {Addr: ip("224.0.0.1")}, {Addr: ip("fe80::1")}, {}})
	if err == nil {
		t.Fatal("Set with invalid entries returned no error")
	}
	if diff := cmp.Diff([]string{"203.0.113.9"}, addrsOf(tb.List())); diff != "" {
		t.Errorf("valid entry must still apply (-want +got):\n%s", diff)
	}
}

func TestAddFailureNotPublished(t *testing.T) {
	f := newFake()
	f.failAdd = map[netip.Addr]error{ip("203.0.113.5"): errors.New("boom")}
	tb := startFake(t, f, Options{})
	err := tb.Set(context.Background(), vips("203.0.113.4", "203.0.113.5"))
	if err == nil {
		t.Fatal("want an error for the failed add")
	}
	if diff := cmp.Diff([]string{"203.0.113.4"}, addrsOf(tb.List())); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

func TestRepairOutsideRemoval(t *testing.T) {
	f := newFake()
	tb := startFake(t, f, Options{})
	sub := tb.Subscribe()
	defer sub.Close()
	if err := tb.Set(context.Background(), vips("203.0.113.7")); err != nil {
		t.Fatal(err)
	}
	sub.Next()
	f.takeOps()
	// Someone runs ip addr del.
	f.mu.Lock()
	delete(f.addrs, ip("203.0.113.7"))
	f.mu.Unlock()
	f.changes <- change{Index: 1, AddrRemoved: ip("203.0.113.7")}
	waitFor(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.addrs[ip("203.0.113.7")]
	})
	if evs := sub.Next(); len(evs) != 0 {
		t.Errorf("a repaired VIP must not be reported as removed; got %+v", evs)
	}
	// The whole link goes.
	f.mu.Lock()
	f.exists = false
	clear(f.addrs)
	f.mu.Unlock()
	f.changes <- change{Index: 1, LinkGone: true}
	waitFor(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.exists && f.addrs[ip("203.0.113.7")]
	})
}

func TestIfbFallbackLoggedKind(t *testing.T) {
	f := newFake()
	f.noDummy = true
	tb := startFake(t, f, Options{})
	if err := tb.Set(context.Background(), vips("203.0.113.1")); err != nil {
		t.Fatal(err)
	}
	if f.kind != "ifb" {
		t.Errorf("kind = %q, want ifb", f.kind)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"long name", Options{Interface: "a-very-long-interface-name"}},
		{"bad kind", Options{Kind: "bridge"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := newTable(tc.opts, newFake()); err == nil {
				t.Error("want an error")
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
