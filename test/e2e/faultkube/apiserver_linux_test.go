package faultkube_test

import (
	"fmt"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// outage is how long the API server stays away.
const outage = 30 * time.Second

// TestAPIServerAway30s stops kube-apiserver, waits 30 s and starts it again
// on the same etcd. While it is away the VIP's route stays in the router's
// kernel with both nodes as next hops (polled every 20 ms: any poll without
// it fails) and a client behind the router keeps getting answers from the
// VIP (pings every 100 ms: none lost). After it is back the agents'
// informers and the allocator recover by themselves: a new Service gets an
// address, its status, its AddressAllocated and Announcing Events and its
// route.
func TestAPIServerAway30s(t *testing.T) {
	e := setup(t)
	e.createService(t, "before")
	vip := e.waitIngress(t, "before", 60*time.Second)
	e.waitRouted(t, vip, true, 60*time.Second)
	if err := e.client.Ping(vip.String()); err != nil {
		t.Fatalf("the client cannot reach %s before the fault: %v", vip, err)
	}

	w := e.watchRoutes(vip)
	defer w.Stop()
	// Pings every 100 ms until the API server is back.
	ping, err := e.client.Start("ping", []string{"ping", "-n", "-q", "-i", "0.1", vip.String()})
	if err != nil {
		t.Fatal(err)
	}

	// Away means away: 30 s counted from when the process has exited
	// (its graceful shutdown may take a while).
	stopping := time.Now()
	if err := e.api.Stop(); err != nil {
		t.Logf("stop kube-apiserver: %v", err)
	}
	if !e.api.Process().Exited() {
		t.Fatal("kube-apiserver still running after Stop")
	}
	stopped := time.Now()
	t.Logf("kube-apiserver stopped in %s", stopped.Sub(stopping).Round(time.Millisecond))
	time.Sleep(outage)
	e.checkAgentsAlive(t)
	if err := e.api.Start(); err != nil {
		t.Fatal(err)
	}
	if err := e.api.WaitReady(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	t.Logf("kube-apiserver gone for %s (stop to ready again: %s)", back.Sub(stopped).Round(time.Millisecond), back.Sub(stopping).Round(time.Millisecond))

	// The client's pings over the outage: every one answered.
	if err := ping.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ping.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("ping did not end on SIGINT")
	}
	sent, got, err := pingSummary(ping.Log())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("client pings to %s across the outage: %d sent, %d answered", vip, sent, got)
	if least := int(back.Sub(stopping)/(100*time.Millisecond)) / 2; sent < least {
		t.Errorf("only %d pings sent in %s: the probe did not run", sent, back.Sub(stopping).Round(time.Second))
	}
	if got != sent {
		t.Errorf("the client lost %d of %d pings to %s while the API server was away", sent-got, sent, vip)
	}

	// Recovery: a new Service goes the whole way. client-go's reflectors
	// back off (up to 30 s plus as much jitter) while the server is away,
	// so their next attempt may come well after it is back.
	e.createService(t, "after")
	v2 := e.waitIngress(t, "after", 180*time.Second)
	allocated := time.Since(back)
	e.waitEvent(t, svcNS, "after", "AddressAllocated", 60*time.Second, v2.String())
	for _, n := range nodeNames {
		e.waitEvent(t, svcNS, "after", "Announcing", 120*time.Second, "node "+n)
	}
	e.waitRouted(t, v2, true, 120*time.Second)
	t.Logf("after the API server was back: the new Service had its address in %s, its route in %s",
		allocated.Round(time.Millisecond), time.Since(back).Round(time.Millisecond))

	polls, gaps := w.Stop()
	t.Logf("router kernel polled %d times over %s", polls, time.Since(w.start).Round(time.Second))
	if polls < int(outage/(20*time.Millisecond))/4 {
		t.Errorf("only %d polls of the router's kernel: the watch did not run", polls)
	}
	for _, g := range gaps {
		t.Errorf("route gap: %s", g)
	}
	// The old VIP is still announced and reachable once things settled.
	e.waitRouted(t, vip, true, 10*time.Second)
	if err := e.client.Ping(vip.String()); err != nil {
		t.Error(err)
	}
	if err := e.client.Ping(v2.String()); err != nil {
		t.Error(err)
	}
	e.checkAgentsAlive(t)
}

var pingRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// pingSummary reads iputils ping's summary line.
func pingSummary(log string) (sent, received int, err error) {
	m := pingRE.FindStringSubmatch(log)
	if m == nil {
		if len(log) > 400 {
			log = log[len(log)-400:]
		}
		return 0, 0, fmt.Errorf("no ping summary in %q", log)
	}
	sent, _ = strconv.Atoi(m[1])
	received, _ = strconv.Atoi(m[2])
	return sent, received, nil
}
