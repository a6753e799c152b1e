//go:build !linux

package dataplane

import (
	"log/slog"
	"net/netip"
)

// DefaultARPFilterTable is the name of the nftables table (family arp) the
// ARP filter owns on Linux.
const DefaultARPFilterTable = "vipspeaker"

// ARPFilterOptions configure an ARPFilter (Linux only).
type ARPFilterOptions struct {
	Logger *slog.Logger
	Table  string
	Enter  func(fn func() error) error
}

// ARPFilter needs Linux's nftables.
type ARPFilter struct{}

// NewARPFilter fails off Linux.
func NewARPFilter(ARPFilterOptions) (*ARPFilter, error) { return nil, errNotLinux }

// Set fails off Linux.
func (f *ARPFilter) Set(vips, notOwned []netip.Addr) error { return errNotLinux }

// Remove fails off Linux.
func (f *ARPFilter) Remove() error { return errNotLinux }
