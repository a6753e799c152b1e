package kube

import (
	"context"
	"sync"
	"time"
)

// resyncBatch is how many Services a configuration change puts into the
// allocator's queue at a time; more follow once the queue is shorter than
// that.
const resyncBatch = 16

// resync holds the Services a configuration change re-checks. They enter
// the allocator's queue in small batches while it is nearly empty, so a
// Service created meanwhile waits for at most a batch, not for thousands
// of unchanged Services (a pool added to a large cluster).
type resync struct {
	mu   sync.Mutex
	keys []string
	kick chan struct{}
}

// requeue replaces the pending re-checks with keys.
func (c *Controller) requeue(keys []string) {
	c.resync.mu.Lock()
	c.resync.keys = keys
	c.resync.mu.Unlock()
	select {
	case c.resync.kick <- struct{}{}:
	default:
	}
}

// runResync feeds the pending re-checks into the queue until ctx ends.
func (c *Controller) runResync(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.resync.kick:
		}
		for {
			if c.queue.Len() >= resyncBatch {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Millisecond):
				}
				continue
			}
			c.resync.mu.Lock()
			n := min(resyncBatch, len(c.resync.keys))
			batch := c.resync.keys[:n]
			c.resync.keys = c.resync.keys[n:]
			c.resync.mu.Unlock()
			if n == 0 {
				break
			}
			for _, k := range batch {
				c.queue.Add(k)
			}
		}
	}
}
