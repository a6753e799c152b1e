package owner

import (
	"net/netip"
	"os/exec"
	"testing"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
)

func TestInterfaceAddr(t *testing.T) {
	ns := nstest.New(t)
	for _, args := range [][]string{
		{"link", "add", "eth0", "type", "ifb"},
		{"link", "set", "eth0", "up"},
		{"addr", "add", "2001:db8:2::10/64", "dev", "eth0", "nodad"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	get := func() (netip.Addr, error) {
		var a netip.Addr
		err := ns.Do(func() error {
			var err error
			a, err = InterfaceAddr("eth0")
			return err
		})
		return a, err
	}
	if a, err := get(); err != nil || a != netip.MustParseAddr("2001:db8:2::10") {
		t.Errorf("IPv6 only: %s, %v", a, err)
	}
	if out, err := exec.Command("ip", "-n", ns.Name, "addr", "add", "198.18.2.10/24", "dev", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if a, err := get(); err != nil || a != netip.MustParseAddr("198.18.2.10") {
		t.Errorf("with IPv4: %s, %v; want the IPv4 address", a, err)
	}
	if err := ns.Do(func() error { _, err := InterfaceAddr("lo"); return err }); err == nil {
		t.Error("lo has no global address, but InterfaceAddr found one")
	}
}
