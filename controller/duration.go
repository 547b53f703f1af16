package controller

import (
	"fmt"
	"strconv"
	"time"
)

// ParseSpecDuration reads a duration of the specs: a whole number and h, d
// or w, such as "36h", "7d" or "2w" (the CRDs' pattern [0-9]+[hdw]).
// time.ParseDuration knows no days or weeks, which retention is counted in.
// Zero is allowed; a field that needs more says so itself.
func ParseSpecDuration(v string) (time.Duration, error) {
	if v == "" {
		return 0, fmt.Errorf("%q: want a number and h, d or w, for example 7d", v)
	}
	n, err := strconv.Atoi(v[:len(v)-1])
	unit := map[byte]time.Duration{'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[v[len(v)-1]]
	if err != nil || n < 0 || unit == 0 {
		return 0, fmt.Errorf("%q: want a number and h, d or w, for example 7d", v)
	}
	return time.Duration(n) * unit, nil
}
