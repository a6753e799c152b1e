package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/vipspeaker/vipspeaker/routing"
)

func aggVIP(a string, bits int, comms ...string) routing.VIP {
	v := vip(a, comms...)
	v.Attrs.AggregateBits = bits
	return v
}

// A pool's aggregation length: the VIPs inside one covering prefix share
// one path at the peer, carrying the union of their communities; it stays
// while any of them is there and leaves with the last; a VIP without
// aggregation (a Local Service) keeps its host route beside it.
func TestServerAggregatesPoolPrefixes(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	r := startPeer(t, "127.0.0.2", port, false)
	_, src, _, _ := startServer(t, ourConfig{port: port, peers: []*peer{r}}, nil)
	established(t, r)

	src.push(
		routing.Event{Kind: routing.Added, VIP: aggVIP("203.0.113.10", 24, "65000:1")},
		routing.Event{Kind: routing.Added, VIP: aggVIP("203.0.113.20", 24, "65000:2")},
		routing.Event{Kind: routing.Added, VIP: aggVIP("203.0.113.30", 0)}, // Local: host route
		routing.Event{Kind: routing.Added, VIP: aggVIP("2001:db8:100::10", 64)},
	)
	want := func(prefixes ...string) func() error {
		return func() error {
			rib := r.routes(t)
			got := keys(rib)
			slices.Sort(got)
			slices.Sort(prefixes)
			if !slices.Equal(got, prefixes) {
				return fmt.Errorf("peer holds %v, want %v", got, prefixes)
			}
			return nil
		}
	}
	eventually(t, 5*time.Second, "aggregates and the host route", want("203.0.113.0/24", "203.0.113.30/32", "2001:db8:100::/64"))
	comms := func(want ...uint32) func() error {
		return func() error {
			p, ok := r.routes(t)["203.0.113.0/24"]
			if !ok {
				return errors.New("no 203.0.113.0/24")
			}
			c, _ := attr[*bgppkt.PathAttributeCommunities](p)
			var got []uint32
			if c != nil {
				got = c.Value
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("communities %v, want %v", got, want)
			}
			return nil
		}
	}
	eventually(t, 5*time.Second, "the aggregate carries both members' communities", comms(65000<<16|1, 65000<<16|2))

	src.push(routing.Event{Kind: routing.Removed, VIP: aggVIP("203.0.113.10", 24, "65000:1")})
	eventually(t, 5*time.Second, "one member left: the aggregate stays with its communities", comms(65000<<16|2))
	if err := want("203.0.113.0/24", "203.0.113.30/32", "2001:db8:100::/64")(); err != nil {
		t.Fatal(err)
	}
	// The pool's aggregation switched off: the member becomes a host route.
	src.push(routing.Event{Kind: routing.Changed, VIP: aggVIP("203.0.113.20", 0, "65000:2")},
		routing.Event{Kind: routing.Removed, VIP: aggVIP("2001:db8:100::10", 64)})
	eventually(t, 5*time.Second, "aggregates gone with their last member", want("203.0.113.20/32", "203.0.113.30/32"))
}

// A pool's local-pref reaches an iBGP peer as LOCAL_PREF on the wire.
func TestServerLocalPrefAtIBGPPeer(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	r := startPeerAS(t, "127.0.0.2", port, false, true, 65001)
	_, src, _, _ := startServer(t, ourConfig{port: port, peers: []*peer{r}, peerAS: 65001}, nil)
	established(t, r)
	v := vip("203.0.113.10")
	v.Attrs.LocalPref = 250
	src.push(routing.Event{Kind: routing.Added, VIP: v})
	eventually(t, 5*time.Second, "LOCAL_PREF 250 at the iBGP peer", func() error {
		p, ok := r.routes(t)["203.0.113.10/32"]
		if !ok {
			return errors.New("no 203.0.113.10/32")
		}
		if lp, ok := attr[*bgppkt.PathAttributeLocalPref](p); !ok || lp.Value != 250 {
			return fmt.Errorf("LOCAL_PREF %v, want 250", lp)
		}
		return nil
	})
}

func TestPrefixPathLocalPref(t *testing.T) {
	p, err := prefixPath(netip.MustParsePrefix("203.0.113.0/24"), routing.Attrs{LocalPref: 250}, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if lp, ok := attr[*bgppkt.PathAttributeLocalPref](p); !ok || lp.Value != 250 {
		t.Errorf("LOCAL_PREF %v, want 250", lp)
	}
	p, err = prefixPath(netip.MustParsePrefix("203.0.113.0/24"), routing.Attrs{}, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := attr[*bgppkt.PathAttributeLocalPref](p); ok {
		t.Error("LOCAL_PREF set though the pool asks for none")
	}
}

func TestPrependRepeatsTheAS(t *testing.T) {
	p, err := prefixPath(netip.MustParsePrefix("203.0.113.50/32"), routing.Attrs{}, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if err := prepend(p, 65001, 3); err != nil {
		t.Fatal(err)
	}
	ap, ok := attr[*bgppkt.PathAttributeAsPath](p)
	if !ok || ap.String() != "{AsPath: 65001 65001 65001}" {
		t.Errorf("AS_PATH %v, want 65001 65001 65001", ap)
	}
	if err := prepend(p, 0, 3); err == nil {
		t.Error("prepend without an AS accepted")
	}
}
