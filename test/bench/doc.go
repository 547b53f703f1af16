// Package bench holds Outpost's benchmarks. Each measures Outpost side by
// side with its reference in the same run, interleaved so both see the same
// machine load, and reports the ratio. Run them with `make bench`.
package bench
