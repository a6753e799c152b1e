package bgp

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/routing"
)

// The native import end to end in one process: two GoBGP peers send a
// default route, RunImport hands the best paths to a routing.Importer,
// and the kernel of a test namespace shows an ECMP default with protocol
// bgp, which goes with the withdrawals and, for what is left, with Close.
//
// The peers speak from 127.0.0.2 and .3 (unprivileged, in the test's own
// namespace); the kernel of the import namespace reaches 198.18.0.2 and .3
// instead, so the test maps one onto the other between the two parts.
func TestNativeImportIntoKernel(t *testing.T) {
	ns := nstest.New(t)
	ip := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ip("link", "add", "up0", "type", "veth", "peer", "name", "up1")
	ip("link", "set", "up1", "up")
	ip("link", "set", "up0", "up")
	ip("addr", "add", "198.18.0.1/24", "dev", "up0")
	im, err := routing.NewImporter(routing.ImportOptions{NetnsPath: ns.Path(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = im.Close() })
	lab := map[netip.Addr]netip.Addr{
		netip.MustParseAddr("127.0.0.2"): netip.MustParseAddr("198.18.0.2"),
		netip.MustParseAddr("127.0.0.3"): netip.MustParseAddr("198.18.0.3"),
	}
	feed := func(p netip.Prefix, nhs []netip.Addr, withdrawn bool) {
		for i, nh := range nhs {
			nhs[i] = lab[nh]
		}
		im.Update(p, nhs, withdrawn)
	}

	port := freePort(t, "127.0.0.1")
	r2 := startPeer(t, "127.0.0.2", port, false)
	r3 := startPeer(t, "127.0.0.3", port, false)
	s, _, _, _ := startServer(t, ourConfig{port: port, peers: []*peer{r2, r3}}, nil)
	established(t, r2)
	established(t, r3)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.RunImport(ctx, feed, ImportOptions{}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("RunImport did not return")
		}
	})

	route := func(want string) func() error {
		return func() error {
			got := strings.Join(strings.Fields(ip("route", "show", "proto", "bgp")), " ")
			if got != want {
				return &mismatch{got: got, want: want}
			}
			return nil
		}
	}
	d2 := r2.announce(t, "0.0.0.0/0", 0)
	r3.announce(t, "0.0.0.0/0", 0)
	eventually(t, 5*time.Second, "ECMP default in the kernel", route(
		"default nexthop via 198.18.0.2 dev up0 weight 1 nexthop via 198.18.0.3 dev up0 weight 1"))
	r2.withdraw(t, d2)
	eventually(t, 5*time.Second, "default through one router", route("default via 198.18.0.3 dev up0"))
	cancel()
	if err := im.Close(); err != nil {
		t.Fatal(err)
	}
	if got := ip("route", "show", "proto", "bgp"); got != "" {
		t.Errorf("after Close the kernel still has %q", got)
	}
}

type mismatch struct{ got, want string }

func (m *mismatch) Error() string { return "kernel bgp routes " + m.got + ", want " + m.want }
