package dirsource

import (
	"context"
	"fmt"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce lets a burst of file events (an editor writing, renaming and
// touching a file) settle into one pass.
const debounce = 150 * time.Millisecond

// watch sends on changed after file events in dir, until ctx ends.
func watch(ctx context.Context, dir string, changed chan<- struct{}) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	go func() {
		defer w.Close()
		var fire <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-w.Events:
				if !ok {
					return
				}
				fire = time.After(debounce)
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
				// A lost event (queue overflow) is caught by the next pass.
				fire = time.After(debounce)
			case <-fire:
				fire = nil
				select {
				case changed <- struct{}{}:
				default:
				}
			}
		}
	}()
	return nil
}
