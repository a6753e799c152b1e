//go:build !linux

package dataplane

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vipspeaker/vipspeaker/routing"
)

// DefaultHandoverTable is the name of the nftables tables Handover owns on
// Linux.
const DefaultHandoverTable = "vipspeaker"

// HandoverOptions configure a Handover (Linux only).
type HandoverOptions struct {
	Logger     *slog.Logger
	Table      string
	Enter      func(fn func() error) error
	Registerer prometheus.Registerer
}

// Handover needs Linux's nftables.
type Handover struct{}

// NewHandover fails off Linux.
func NewHandover(HandoverOptions) (*Handover, error) { return nil, errNotLinux }

// SetTargets does nothing off Linux.
func (h *Handover) SetTargets([]netip.Addr) {}

// Run fails off Linux.
func (h *Handover) Run(context.Context, interface {
	Subscribe() *routing.Subscription
}) error {
	return errNotLinux
}
