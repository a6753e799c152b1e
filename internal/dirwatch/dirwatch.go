// Package dirwatch signals, debounced, that something in a directory
// changed. It follows the ConfigMap-volume pattern too (files are symlinks
// into a ..data directory that is swapped atomically). It needs inotify
// from the kernel (fsnotify).
package dirwatch

import (
	"fmt"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watcher watches one directory. New starts it; Close stops it.
type Watcher struct {
	w       *fsnotify.Watcher
	changed chan struct{}
	done    chan struct{}
}

// New watches dir; a change is signalled once the directory has stayed
// quiet for debounce.
func New(dir string, debounce time.Duration) (*Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	d := &Watcher{w: w, changed: make(chan struct{}, 1), done: make(chan struct{})}
	go d.loop(debounce)
	return d, nil
}

func (d *Watcher) loop(debounce time.Duration) {
	var timer <-chan time.Time
	for {
		select {
		case <-d.done:
			return
		case _, ok := <-d.w.Events:
			if !ok {
				return
			}
			timer = time.After(debounce)
		case _, ok := <-d.w.Errors:
			if !ok {
				return
			}
			timer = time.After(debounce)
		case <-timer:
			timer = nil
			select {
			case d.changed <- struct{}{}:
			default:
			}
		}
	}
}

// Changed is signalled after the directory changed and stayed quiet for the
// debounce time.
func (d *Watcher) Changed() <-chan struct{} { return d.changed }

// Close stops watching.
func (d *Watcher) Close() error {
	close(d.done)
	return d.w.Close()
}
