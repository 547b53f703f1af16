package backup

import (
	"sync/atomic"
	"time"
)

// RestoreStage is one part of a restore's work.
type RestoreStage int

const (
	// StageGet is downloading objects from the store.
	StageGet RestoreStage = iota
	// StageCheck is checking each object's sha256 against the manifest.
	StageCheck
	// StageOpen is decrypting and decompressing objects.
	StageOpen
	// StageWrite is writing file contents into the data directory.
	StageWrite
	// StageStalled is the tar reader waiting for the next object: the
	// downloads and decoding fell behind the writing.
	StageStalled
	// StageSync is making the restored files durable.
	StageSync
	restoreStages
)

var stageNames = [restoreStages]string{"get", "check", "open", "write", "stalled", "sync"}

func (s RestoreStage) String() string { return stageNames[s] }

// RestoreStages lists the stages in order.
func RestoreStages() []RestoreStage {
	out := make([]RestoreStage, restoreStages)
	for i := range out {
		out[i] = RestoreStage(i)
	}
	return out
}

// RestoreTimings says where a restore's time went. Downloading, checking,
// opening and writing run on many goroutines at once, so their times are
// summed over the goroutines (worker time, which can exceed the restore's
// elapsed time); stalled and sync are elapsed time. A nil *RestoreTimings
// records nothing.
type RestoreTimings struct {
	ns [restoreStages]atomic.Int64
}

func (t *RestoreTimings) add(s RestoreStage, since time.Time) {
	if t != nil {
		t.ns[s].Add(int64(time.Since(since)))
	}
}

// Of is the time spent in stage s.
func (t *RestoreTimings) Of(s RestoreStage) time.Duration { return time.Duration(t.ns[s].Load()) }
