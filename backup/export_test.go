package backup

import "testing"

// WithoutWriteBehind turns off startWriteback for the rest of t, so that
// a restore's data stays dirty in the page cache until the final flush.
func WithoutWriteBehind(t testing.TB) {
	writeBehind = false
	t.Cleanup(func() { writeBehind = true })
}
