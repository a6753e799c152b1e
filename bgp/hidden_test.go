package bgp

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"

	"github.com/vipspeaker/vipspeaker/routing"
)

// [[peer-nodes]]: a neighbor hidden on this node loses its session and the
// VIP with it; the other session is not reset; unhidden, it comes back.
// Hidden before the first config (cluster mode before the Node is read),
// it never connects.
func TestServerHiddenNeighbors(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	r1 := startPeer(t, "127.0.0.2", port, false)
	r2 := startPeer(t, "127.0.0.3", port, false)
	s, src, _, _ := startServer(t, ourConfig{port: port, peers: []*peer{r1, r2}}, nil)
	established(t, r1)
	established(t, r2)
	_, up1 := r1.session(t)
	src.push(routing.Event{Kind: routing.Added, VIP: vip("203.0.113.10")})
	eventually(t, 5*time.Second, "VIP at r2", func() error {
		if _, ok := r2.routes(t)["203.0.113.10/32"]; !ok {
			return errors.New("not there")
		}
		return nil
	})

	if err := s.SetHiddenNeighbors(context.Background(), []netip.Addr{netip.MustParseAddr(r2.addr)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "r2's session gone and the VIP with it", func() error {
		if st, _ := r2.session(t); st == api.PeerState_SESSION_STATE_ESTABLISHED {
			return errors.New("still established")
		}
		if _, ok := r2.routes(t)["203.0.113.10/32"]; ok {
			return errors.New("VIP still at r2")
		}
		return nil
	})
	if st, up := r1.session(t); st != api.PeerState_SESSION_STATE_ESTABLISHED || up != up1 {
		t.Fatal("r1 was reset when r2 was hidden")
	}
	// a reload of the same file keeps r2 hidden
	if err := s.Apply(context.Background(), "gobgp.conf", []byte(ourConfig{port: port, peers: []*peer{r1, r2}, extra: "\n"}.String())); err != nil {
		t.Fatal(err)
	}
	if err := s.SetHiddenNeighbors(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	established(t, r2)
	if st, up := r1.session(t); st != api.PeerState_SESSION_STATE_ESTABLISHED || up != up1 {
		t.Fatal("r1 was reset when r2 came back")
	}
}

func TestServerHiddenBeforeStartNeverConnects(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	r1 := startPeer(t, "127.0.0.2", port, false)
	r2 := startPeer(t, "127.0.0.3", port, false)
	s, err := New(Options{RunDir: t.TempDir(), Logger: testLogger(t), NodeName: "node1", NextHop6: nh6, ShutdownTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetHiddenNeighbors(context.Background(), []netip.Addr{netip.MustParseAddr(r2.addr)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(context.Background(), "gobgp.conf", []byte(ourConfig{port: port, peers: []*peer{r1, r2}}.String())); err != nil {
		t.Fatal(err)
	}
	src := newFakeSource()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx, src) }()
	t.Cleanup(func() { cancel(); <-done })
	established(t, r1)
	if st, _ := r2.session(t); st == api.PeerState_SESSION_STATE_ESTABLISHED {
		t.Fatal("a hidden neighbor got a session")
	}
	// the speaker has no neighbor r2 at all, so it cannot dial it later
	for _, p := range s.Peers() {
		if p.Address == netip.MustParseAddr(r2.addr) {
			t.Fatalf("hidden neighbor %s configured in the speaker (%s)", r2.addr, p.State)
		}
	}
}
