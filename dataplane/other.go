//go:build !linux

package dataplane

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

var errNotLinux = errors.New("layer2 responder needs Linux")

type sysctlChange struct{ Path string }

func (r *Responder) listenPort(name string) (*port, error) { return nil, errNotLinux }

func (r *Responder) recordSysctlsLocked(string, []sysctlChange) {}

func (r *Responder) restoreLocked(string) error { return nil }

type corrector struct{}

func (c *corrector) close() {}

func (r *Responder) startCorrector(context.Context) *corrector { return nil }
func (c *corrector) release(*port, netip.Addr)                 {}
func (c *corrector) reclaim(string, netip.Addr)                {}
func (c *corrector) learn(*port, []byte, bool)                 {}
func (c *corrector) stopAll()                                  {}

const (
	DefaultStaleWindow = 30 * time.Second
	DefaultQueueNum    = 22096
)
