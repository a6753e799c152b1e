//go:build !linux

package bpf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// FastPath is the XDP fast path; on this platform Load always fails with
// ErrNotSupported.
type FastPath struct{}

// Load returns an error wrapping ErrNotSupported: XDP needs Linux.
func Load(Options) (*FastPath, error) {
	return nil, fmt.Errorf("%w: XDP needs Linux", ErrNotSupported)
}

func (*FastPath) SetInterfaces(_, _ []string) error          { return ErrNotSupported }
func (*FastPath) Interfaces() map[string]string              { return nil }
func (*FastPath) SetOwned(map[netip.Addr][]string) error     { return ErrNotSupported }
func (*FastPath) Owned() (map[netip.Addr][]int, error)       { return nil, ErrNotSupported }
func (*FastPath) SetCounted([]netip.Addr) error              { return ErrNotSupported }
func (*FastPath) Traffic() (map[netip.Addr]Traffic, error)   { return nil, ErrNotSupported }
func (*FastPath) RenewLease(time.Duration) error             { return ErrNotSupported }
func (*FastPath) LeaseRemaining() (time.Duration, error)     { return 0, ErrNotSupported }
func (*FastPath) Announce(string, []netip.Addr) (int, error) { return 0, ErrNotSupported }
func (*FastPath) AnnounceOwned(string, []netip.Addr) (int, []netip.Addr, error) {
	return 0, nil, ErrNotSupported
}
func (*FastPath) Run(context.Context) error { return ErrNotSupported }
func (*FastPath) Close() error              { return nil }
func (*FastPath) Remove() error             { return nil }
func (*FastPath) SentCounts(string) (arpReplies, ndpAdverts, gratuitous uint64, err error) {
	return 0, 0, 0, ErrNotSupported
}

// Unsupported reports whether err means the fast path cannot run here; on
// this platform every error of Load does.
func Unsupported(err error) bool { return errors.Is(err, ErrNotSupported) }

// LiveFramesAllowed: no XDP here.
func LiveFramesAllowed() (bool, error) { return false, ErrNotSupported }
