package controller

import (
	"testing"
	"time"
)

func TestParseSpecDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"36h": 36 * time.Hour, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "0d": 0} {
		if got, err := ParseSpecDuration(in); err != nil || got != want {
			t.Errorf("ParseSpecDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "7", "7m", "7dd", "-1d", "1.5d"} {
		if got, err := ParseSpecDuration(in); err == nil {
			t.Errorf("ParseSpecDuration(%q) = %v, want an error", in, got)
		}
	}
}
