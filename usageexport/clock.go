package usageexport

import "time"

// Clock tells the time. Metering takes it as a parameter so that tests can
// move time across hour and month boundaries without waiting.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// second is the resolution of every time the ledger stores. Whole seconds
// keep record ids and quantities exact and reproducible.
func second(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }
