package ops_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

const l2VIP = "203.0.113.50"

// TestStatusLayer2Owner: two nodes and a client on one segment, a layer2
// pool with the XDP fast path. `vipspeaker status` on each node names the
// same owner — "owner" on that node, "standby" on the other — and the
// owner's receive counter for the VIP counts the client's pings.
func TestStatusLayer2Owner(t *testing.T) {
	nstest.RequireRoot(t)
	bin, err := lab.BuildBinary("./cmd/vipspeaker")
	if err != nil {
		t.Fatalf("build vipspeaker: %v", err)
	}
	l := lab.New(t)
	client := l.MustHost("client")
	l.MustBridge(client, "br0", []string{"198.18.6.1/24"})
	client.MustRun("ip", "route", "add", "203.0.113.0/24", "dev", "br0")
	var nodes []*lab.Host
	for i := range 2 {
		h := l.MustHost(fmt.Sprintf("node%d", i))
		l.MustLinkToBridge(h, "eth0", []string{fmt.Sprintf("198.18.6.%d/24", 10+i)}, client, "br0")
		nodes = append(nodes, h)
	}
	svcDir, cfgDir := filepath.Join(l.Dir(), "services"), filepath.Join(l.Dir(), "config")
	for _, d := range []string{svcDir, cfgDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeAtomic(t, filepath.Join(cfgDir, "vipspeaker.toml"), lab.AgentTOML{
		Pools: []lab.Pool{{Name: "flat", Addresses: []string{"203.0.113.48/28"}, Layer2Interfaces: []string{"eth0"}}},
		Extra: "[layer2]\ngratuitous-interval = \"100ms\"\nfast-path = \"xdp\"\n\n[membership]\njoin = [\"198.18.6.10\", \"198.18.6.11\"]\n",
	}.String())
	writeAtomic(t, filepath.Join(svcDir, "web.yaml"), strings.ReplaceAll(opsService, "203.0.113.40", l2VIP))
	runDirs := make([]string, len(nodes))
	for i, h := range nodes {
		runDirs[i] = filepath.Join(l.Dir(), fmt.Sprintf("run-node%d", i))
		if _, err := h.Start("vipspeaker", []string{bin, "run", "--services-dir", svcDir, "--config-dir", cfgDir,
			"--run-dir", runDirs[i], "--node-name", fmt.Sprintf("node%d", i), "--metrics-addr", "", "--log-level", "debug"}); err != nil {
			t.Fatal(err)
		}
	}

	// Both agents agree on one owner.
	var rows [2][]string
	var outs [2]string
	owner := -1
	lab.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		for i, h := range nodes {
			out, err := h.Run(context.Background(), bin, "status", "--run-dir", runDirs[i])
			if err != nil {
				return fmt.Errorf("node%d: %v: %s", i, err, out)
			}
			outs[i], rows[i] = out, fields(out, l2VIP)
			// ADDRESS SERVICE MODE POOL ROLE OWNER RX-PACKETS RX-BYTES
			if len(rows[i]) != 8 || rows[i][2] != "layer2" {
				return fmt.Errorf("node%d: VIP row %q", i, rows[i])
			}
		}
		if rows[0][5] != rows[1][5] || !strings.HasPrefix(rows[0][5], "node") {
			return fmt.Errorf("owners disagree or unknown: node0 says %q, node1 says %q", rows[0][5], rows[1][5])
		}
		owner = int(rows[0][5][len("node")] - '0')
		if rows[owner][4] != "owner" || rows[1-owner][4] != "standby" {
			return fmt.Errorf("roles: node0 %q, node1 %q; want owner on node%d, standby on the other", rows[0][4], rows[1][4], owner)
		}
		return nil
	})
	t.Logf("vipspeaker status on the owner, node%d:\n%s", owner, outs[owner])

	// The client's pings reach the owner and are counted there (XDP).
	before := rxPackets(t, rows[owner])
	const pings = 5
	lab.Eventually(t, 10*time.Second, 200*time.Millisecond, func() error { return client.Ping(l2VIP) })
	if _, err := client.Run(context.Background(), "ping", "-n", "-q", "-c", strconv.Itoa(pings), "-i", "0.2", "-W", "1", l2VIP); err != nil {
		t.Fatalf("ping %s: %v", l2VIP, err)
	}
	lab.Eventually(t, 10*time.Second, 200*time.Millisecond, func() error {
		out, err := nodes[owner].Run(context.Background(), bin, "status", "--run-dir", runDirs[owner])
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if got := rxPackets(t, fields(out, l2VIP)); got < before+pings {
			return fmt.Errorf("RX PACKETS %d, want at least %d (before) + %d pings", got, before, pings)
		}
		return nil
	})
}

// rxPackets reads the RX PACKETS column of a VIP row; the fast path must
// be counting, so "-" is an error.
func rxPackets(t *testing.T, row []string) uint64 {
	t.Helper()
	if len(row) != 8 {
		t.Fatalf("VIP row %q", row)
	}
	n, err := strconv.ParseUint(row[6], 10, 64)
	if err != nil {
		t.Fatalf("RX PACKETS %q: the XDP fast path does not count this VIP (row %q)", row[6], row)
	}
	return n
}
