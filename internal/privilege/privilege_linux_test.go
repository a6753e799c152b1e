package privilege

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func capMask(bits ...uint) uint64 {
	var m uint64
	for _, b := range bits {
		m |= 1 << b
	}
	return m
}

func TestParseCapEff(t *testing.T) {
	status := "Name:\tvipspeaker\nCapInh:\t0000000000000000\nCapPrm:\t000000c000003000\nCapEff:\t000000c000003000\nCapBnd:\t000000c000003000\n"
	got, err := parseCapEff(status)
	if err != nil || got != capMask(capNetAdmin, capNetRaw, capPerfmon, capBPF) {
		t.Fatalf("parseCapEff = %#x, %v; want %#x", got, err, capMask(capNetAdmin, capNetRaw, capPerfmon, capBPF))
	}
	for _, bad := range []string{"Name:\tx\n", "CapEff:\tzz\n"} {
		if _, err := parseCapEff(bad); err == nil {
			t.Errorf("parseCapEff(%q) gave no error", bad)
		}
	}
}

func TestPrivilegeProblems(t *testing.T) {
	daemonSet := capMask(capNetAdmin, capNetRaw, capBPF, capPerfmon)
	for _, tc := range []struct {
		name         string
		eff          uint64
		portStart    int
		wantErr      []string // all in the error; nil: no error
		wantWarnings []string // each in some warning; nil: no warnings
	}{
		{name: "root", eff: ^uint64(0), portStart: 1024},
		{name: "DaemonSet's set, port 179 privileged", eff: daemonSet, portStart: 1024,
			wantWarnings: []string{"CAP_NET_BIND_SERVICE", "port 179"}},
		{name: "DaemonSet's set, unprivileged ports from 0", eff: daemonSet, portStart: 0},
		{name: "sys_admin stands in for bpf and perfmon", eff: capMask(capNetAdmin, capNetRaw, capSysAdmin, capNetBindService), portStart: 1024},
		{name: "no NET_ADMIN", eff: capMask(capNetRaw, capBPF, capPerfmon, capNetBindService), portStart: 1024,
			wantErr: []string{"missing capability CAP_NET_ADMIN", "VIP interface", "VIP addresses"}},
		{name: "nothing", eff: 0, portStart: -1,
			wantErr:      []string{"CAP_NET_ADMIN"},
			wantWarnings: []string{"CAP_NET_RAW", "ARP and NDP"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err, warnings := privilegeProblems(tc.eff, tc.portStart)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.wantErr != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
			}
			all := strings.Join(warnings, "\n")
			for _, w := range tc.wantWarnings {
				if !strings.Contains(all, w) {
					t.Errorf("warnings %q lack %q", warnings, w)
				}
			}
			if tc.wantWarnings == nil && len(warnings) > 0 {
				t.Errorf("unexpected warnings %q", warnings)
			}
		})
	}
}

// Check on this very process agrees with capget(2).
func TestCheckPrivilegesOfThisProcess(t *testing.T) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatalf("capget: %v", err)
	}
	eff := uint64(data[1].Effective)<<32 | uint64(data[0].Effective)
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := parseCapEff(string(b)); err != nil || got != eff {
		t.Fatalf("CapEff from /proc/self/status = %#x, %v; capget says %#x", got, err, eff)
	}
	var logs bytes.Buffer
	err = Check(slog.New(slog.NewTextHandler(&logs, nil)))
	if has := eff&(1<<capNetAdmin) != 0; has != (err == nil) {
		t.Fatalf("NET_ADMIN in effective set: %v, but Check returned %v", has, err)
	}
}
