package bpf

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// monotonic is CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
func monotonic() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}

// RenewLease lets the program answer for d from now. The agent renews it
// well before it lapses (every d/3, say); a program left pinned by an agent
// that died stops answering d after the last renewal. d <= 0 stops the
// answers at once.
func (f *FastPath) RenewLease(d time.Duration) error {
	var until uint64
	if d > 0 {
		now, err := monotonic()
		if err != nil {
			return fmt.Errorf("renew lease: %w", err)
		}
		until = uint64(now + d)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errClosed
	}
	if err := f.objs.VsLease.Put(uint32(0), until); err != nil {
		return fmt.Errorf("renew lease: %w", err)
	}
	return nil
}

// Run renews the lease (Options.Lease) at once and then every quarter of
// it until ctx ends, and returns nil then. Every ResyncInterval it also
// attaches the program to named interfaces that appeared (or were
// recreated) since. It does not expire the lease on
// the way out: the program answers for up to one more lease, or for as long
// as a final RenewLease asked (a planned restart: renew for the restart
// window, then Close). Load starts nothing; without Run (or RenewLease)
// the program does not answer.
func (f *FastPath) Run(ctx context.Context) error {
	if err := f.RenewLease(f.lease); err != nil {
		return err
	}
	t := time.NewTicker(f.lease / 4)
	defer t.Stop()
	resync := time.NewTicker(ResyncInterval)
	defer resync.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-resync.C:
			f.mu.Lock()
			if !f.closed {
				if err := f.syncLocked(); err != nil {
					f.log.Warn("fast path interfaces", "err", err)
				}
			}
			f.mu.Unlock()
			continue
		case <-t.C:
		}
		err := f.RenewLease(f.lease)
		switch {
		case err != nil && errors.Is(err, errClosed):
			return nil
		case err != nil && !failing:
			f.log.Warn("cannot renew the fast path's lease; it stops answering when the lease lapses", "err", err)
			failing = true
		case err == nil && failing:
			f.log.Info("fast path lease renewed again")
			failing = false
		}
	}
}

// LeaseRemaining returns how long the program keeps answering without a
// renewal (0 when the lease has lapsed).
func (f *FastPath) LeaseRemaining() (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, errClosed
	}
	return f.leaseLocked()
}

func (f *FastPath) leaseLocked() (time.Duration, error) {
	var until uint64
	if err := f.objs.VsLease.Lookup(uint32(0), &until); err != nil {
		return 0, fmt.Errorf("read lease: %w", err)
	}
	now, err := monotonic()
	if err != nil {
		return 0, fmt.Errorf("read lease: %w", err)
	}
	if time.Duration(until) <= now {
		return 0, nil
	}
	return time.Duration(until) - now, nil
}
