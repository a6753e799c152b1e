package routing

import (
	"context"
	"net/netip"
	"testing"
)

// BenchmarkSetOneMore measures the reconcile work of adding one VIP to a
// table of 10,000, with the kernel faked (the kernel's own cost is measured
// by `make bench`).
func BenchmarkSetOneMore(b *testing.B) {
	f := newFake()
	tb, err := newTable(Options{}, f)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tb.Run(ctx)
	<-tb.Ready()
	var vs []VIP
	for i := range 10002 {
		vs = append(vs, VIP{Addr: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})})
	}
	if err := tb.Set(ctx, vs[:10000]); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		n := 10000 + i%2
		if err := tb.Set(ctx, vs[:n]); err != nil {
			b.Fatal(err)
		}
	}
}
