package sidebyside

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// updatesOnWire returns when the router's capture saw the first and the
// last node's UPDATE carrying vip/32 since at. The route is in FRR's
// kernel via every node by now, so every node's UPDATE has crossed br0;
// the wait is for the capture's reader only.
func (e *env) updatesOnWire(b *testing.B, vip netip.Addr, at time.Time) (first, last time.Time) {
	p := netip.PrefixFrom(vip, 32)
	lab.Eventually(b, 5*time.Second, 2*time.Millisecond, func() error {
		got := e.wire.Announced(p, at)
		first, last = time.Time{}, time.Time{}
		for _, n := range nodeNames {
			t, ok := got[netip.MustParseAddr(nodeAddr(n))]
			if !ok {
				updates, errs := e.wire.Counts()
				return fmt.Errorf("%s: no UPDATE with %s from %s captured since the Service was created (%v; %d UPDATEs, %d unparsed)", e.sys.Name(), p, n, got, updates, errs)
			}
			if first.IsZero() || t.Before(first) {
				first = t
			}
			if t.After(last) {
				last = t
			}
		}
		return nil
	})
	return first, last
}

// statusWatch records, per Service of the bench's namespace, when a watch
// first delivered it with a status address.
type statusWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	first  map[string]time.Time
}

func (e *env) watchStatus(b testing.TB) *statusWatch {
	cfg := e.API.Admin()
	cfg.Timeout = 0 // the lab's 30 s would end the watch
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	list, err := cs.CoreV1().Services(svcNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	sw := &statusWatch{cancel: cancel, done: make(chan struct{}), first: map[string]time.Time{}}
	go func() {
		defer close(sw.done)
		// From the list's version on, again from the last event's when the
		// watch ends or the API server refuses it for now.
		rv := list.ResourceVersion
		for ctx.Err() == nil {
			w, err := cs.CoreV1().Services(svcNS).Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
			if err != nil {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				now := time.Now()
				s, ok := ev.Object.(*corev1.Service)
				if ev.Type == watch.Error || !ok {
					break
				}
				rv = s.ResourceVersion
				if len(s.Status.LoadBalancer.Ingress) == 0 {
					continue
				}
				sw.mu.Lock()
				if _, ok := sw.first[s.Name]; !ok {
					sw.first[s.Name] = now
				}
				sw.mu.Unlock()
			}
			w.Stop()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return sw
}

// at returns when the watch delivered name with an address, waiting a
// little for the watch to catch up with the poll that saw it first.
func (sw *statusWatch) at(name string) (time.Time, bool) {
	var t time.Time
	err := lab.Poll(2*time.Second, time.Millisecond, func() error {
		sw.mu.Lock()
		defer sw.mu.Unlock()
		var ok bool
		if t, ok = sw.first[name]; !ok {
			return fmt.Errorf("watch has not delivered %s with an address", name)
		}
		return nil
	})
	return t, err == nil
}

func (sw *statusWatch) stop() {
	sw.cancel()
	<-sw.done
}
