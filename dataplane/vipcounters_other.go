//go:build !linux

package dataplane

import (
	"log/slog"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultVIPCountersTable is the name of the nftables table (family inet)
// VIPCounters owns on Linux.
const DefaultVIPCountersTable = "vipspeaker"

// VIPCountersOptions configure VIPCounters (Linux only).
type VIPCountersOptions struct {
	Logger     *slog.Logger
	Table      string
	Enter      func(fn func() error) error
	Registerer prometheus.Registerer
}

// Traffic is what a VIP received.
type Traffic struct{ Packets, Bytes uint64 }

// VIPCounters needs Linux's nftables.
type VIPCounters struct{}

// NewVIPCounters fails off Linux.
func NewVIPCounters(VIPCountersOptions) (*VIPCounters, error) { return nil, errNotLinux }

// Set fails off Linux.
func (c *VIPCounters) Set([]netip.Addr) error { return errNotLinux }

// Traffic fails off Linux.
func (c *VIPCounters) Traffic() (map[netip.Addr]Traffic, error) { return nil, errNotLinux }

// RemoveStale fails off Linux.
func (c *VIPCounters) RemoveStale() (bool, error) { return false, errNotLinux }

// Remove fails off Linux.
func (c *VIPCounters) Remove() error { return errNotLinux }
