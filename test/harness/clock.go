package harness

import (
	"sync"
	"time"
)

// Clock is the stand-in for time in metering tests: it moves only when the
// test says so. It satisfies usageexport.Clock.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock starts a clock at an RFC 3339 time.
func NewClock(rfc3339 string) *Clock {
	c := &Clock{}
	c.Set(rfc3339)
	return c
}

func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

// Set moves the clock to an RFC 3339 time; a malformed literal is a bug in
// the test, so it panics.
func (c *Clock) Set(rfc3339 string) {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil {
		panic(err)
	}
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// Add moves the clock forward by d.
func (c *Clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }
