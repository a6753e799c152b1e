package lab_test

import (
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// The pinger counts every answered request (IPv4 and IPv6), and exactly
// the ones sent while the far end was unreachable as lost.
func TestPingerCountsLostRequests(t *testing.T) {
	l := lab.New(t)
	a, b := l.MustHost("a"), l.MustHost("b")
	l.MustLink(a, "eth0", []string{"198.18.0.1/30", "2001:db8:18::1/64"}, b, "eth0", []string{"198.18.0.2/30", "2001:db8:18::2/64"})
	start := func(dst string) *lab.Pinger {
		t.Helper()
		p, err := a.StartPinger(dst, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop() })
		if err := p.WaitReplies(20, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		return p
	}

	p6 := start("2001:db8:18::2")
	from6 := time.Now()
	time.Sleep(200 * time.Millisecond)
	if r := p6.Stop().Since(from6); r.Lost() != 0 || r.Received < 10 || r.Received != r.Sent {
		t.Errorf("IPv6 on a working link: %v", r)
	}

	p := start("198.18.0.2")
	from := time.Now()
	// b drops what is not addressed to it.
	b.MustRun("ip", "addr", "del", "198.18.0.2/30", "dev", "eth0")
	down := time.Now()
	time.Sleep(300 * time.Millisecond)
	if err := b.AddAddr("eth0", "198.18.0.2/30"); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	if err := p.WaitReplies(20, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	all := p.Stop()
	r := all.Since(from)
	t.Logf("%v", r)
	if r.Sent >= all.Sent || all.Lost() < r.Lost() {
		t.Errorf("Since(%v) kept %d of %d requests", from, r.Sent, all.Sent)
	}
	n, d := r.LongestOutage()
	// About 30 requests were sent while b's end was down; scheduling on a
	// busy machine sends fewer, the link's way back up may cost more.
	if r.Lost() < 10 || r.Lost() > 300 || n != r.Lost() || d < 100*time.Millisecond {
		t.Errorf("%d lost in one run of %d (%v); want one outage of about 30 requests", r.Lost(), n, d)
	}
	if in := r.LostBetween(down.Add(-50*time.Millisecond), up.Add(3*time.Second)); in != r.Lost() {
		t.Errorf("%d of %d lost requests were sent outside the outage", r.Lost()-in, r.Lost())
	}
	if r.Received+r.Lost() != r.Sent || r.Received < 20 {
		t.Errorf("sent %d, answered %d, lost %d", r.Sent, r.Received, r.Lost())
	}

	// Nobody at the address: nothing is answered.
	p, err := a.StartPinger("198.18.0.3", 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if r := p.Stop(); r.Received != 0 || r.Lost() != r.Sent || r.Sent < 5 {
		t.Errorf("ping to an absent address: %v", r)
	}
}
