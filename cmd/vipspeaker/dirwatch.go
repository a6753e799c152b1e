package main

import (
	"fmt"
	"time"

	"github.com/fsnotify/fsnotify"
)

// dirWatcher signals, debounced, that something in a directory changed.
// It follows the ConfigMap-volume pattern too (files are symlinks into a
// ..data directory that is swapped atomically).
type dirWatcher struct {
	w       *fsnotify.Watcher
	changed chan struct{}
	done    chan struct{}
}

func newDirWatcher(dir string, debounce time.Duration) (*dirWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	d := &dirWatcher{w: w, changed: make(chan struct{}, 1), done: make(chan struct{})}
	go d.loop(debounce)
	return d, nil
}

func (d *dirWatcher) loop(debounce time.Duration) {
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
func (d *dirWatcher) Changed() <-chan struct{} { return d.changed }

func (d *dirWatcher) Close() error {
	close(d.done)
	return d.w.Close()
}
