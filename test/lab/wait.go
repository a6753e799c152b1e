package lab

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// ErrGiveUp, wrapped in an error returned by a Poll or Eventually function,
// ends the wait at once (the process died, waiting longer is pointless).
var ErrGiveUp = errors.New("giving up")

// Poll calls fn every interval until it returns nil or timeout has passed;
// on timeout it returns fn's last error.
func Poll(timeout, interval time.Duration, fn func() error) error {
	if interval <= 0 {
		interval = 50 * time.Millisecond
	}
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrGiveUp) {
			return err
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("still failing after %v: %w", timeout, err)
		}
		time.Sleep(min(interval, time.Until(deadline)+time.Millisecond))
	}
}

// Eventually is Poll for tests: it fails the test with fn's last error when
// fn has not succeeded within timeout.
func Eventually(t testing.TB, timeout, interval time.Duration, fn func() error) {
	t.Helper()
	if err := Poll(timeout, interval, fn); err != nil {
		t.Fatal(err)
	}
}
