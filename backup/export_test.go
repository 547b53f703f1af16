package backup

import "testing"

// BeforeBackupStart has f run, for the rest of t, in every backup just
// before it calls pg_backup_start.
func BeforeBackupStart(t testing.TB, f func()) {
	beforeBackupStart = f
	t.Cleanup(func() { beforeBackupStart = func() {} })
}

// WithoutWriteBehind turns off startWriteback and direct writes for the
// rest of t, so that a restore's data stays dirty in the page cache until
// the final flush.
func WithoutWriteBehind(t testing.TB) {
	writeBehind = false
	t.Cleanup(func() { writeBehind = true })
}
