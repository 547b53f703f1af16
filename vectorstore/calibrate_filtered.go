package vectorstore

import (
	"context"
	"fmt"
)

// Filtered searches measured like unfiltered ones. A filtered search walks
// the vector index with pgvector's iterative scan, which starts from
// ef_search (probes) candidates and goes on until k of them pass the
// filter. How many true neighbours it finds depends on that start far
// more than an unfiltered search does: a 1% filter found about 0.63 of
// them on 20k near-duplicates through HNSW at ef_search 40 and 0.30 on 20k
// uniform rows through IVFFlat at sqrt(lists) probes, with nothing to tell
// the caller. So Calibrate also measures the iterative scan under a filter
// of about 1% (sampleFilterSQL) on the same noisy queries, against the
// exact filtered answer, and keeps the smallest setting reaching
// tuningTarget; when none does, filtered searches at the defaults rank
// exactly. A filtered search uses the larger of this and the unfiltered
// setting (see applyTuning): a broad filter behaves like no filter.
//
// The filter is on a hash of the key: it passes rows independently of
// their vectors, as a filter on a feature the vectors do not encode
// would, and no index serves it, so the planner has the vector index or a
// scan to choose from, as for a real filter without a B-tree path. A
// filter that follows the vectors (a category that is a cluster) is not
// what this measures: its matches sit together, near the query or far
// from it.

// sampleFilterSQL passes 1 row in 128 (0.8%), by a hash of its key.
const sampleFilterSQL = "(hashtext(key) & 127) = 0"

// Why a filtered measurement was not made (Tuning.FilteredUnmeasured).
const (
	filteredTooFew  = "fewer than 10 rows pass the sample filter"
	filteredOffPath = "PostgreSQL answered the sample filter without the vector index at %s %d"
)

// FilteredDefault is the setting a filtered search at the defaults starts
// from, for k = 10; 0 means it ranks exactly. The filtered setting was
// measured under a 1% filter, where the iterative scan goes far past its
// start anyway. A broad filter is met within the first candidates, as if
// unfiltered, so it needs the unfiltered setting: the larger of the two
// serves both, and either one unreachable means ranking exactly. Only
// for a tuning with FilteredMeasured.
func (t Tuning) FilteredDefault() int {
	if t.Exact() || t.FilteredExact() {
		return 0
	}
	return max(t.Value, t.FilteredValue)
}

// FilteredExact reports whether filtered searches at the defaults rank
// exactly because no setting of the index reached the target through the
// iterative scan.
func (t Tuning) FilteredExact() bool { return t.FilteredMeasured && t.FilteredValue == 0 }

// calibrateFiltered measures the iterative scan under sampleFilterSQL on
// queries (Calibrate's, whose within it does not change) and records it in
// t. Too few matching rows, or a plan that did not walk the vector index,
// leave it unmeasured, with the reason: filtered searches then keep the
// defaults they had before any measurement. A scan that gives up
// (max_scan_tuples) before 10 rows pass counts the missing rows as
// misses: Search would answer that query exactly, but only after the
// wasted scan, so a setting that needs it is not a good default.
func (s *Store) calibrateFiltered(ctx context.Context, queries []tuningQuery, knob string, values []int, t *Tuning) error {
	opts := SearchOptions{K: tuningK, sampleFilter: sampleFilterSQL}
	filtered := make([]tuningQuery, len(queries))
	for i, q := range queries {
		res, err := s.search(ctx, s.queryValue(q.vector), opts, true)
		if err != nil {
			return fmt.Errorf("exact neighbours: %w", err)
		}
		if len(res.Results) < tuningK {
			t.FilteredUnmeasured = filteredTooFew
			return nil
		}
		q.within = res.Results[len(res.Results)-1].Distance
		filtered[i] = q
	}
	if s.spec.Index.Type == IVFFlat && len(values) > 1 {
		// Probing every list ranks every row that passes: exact by
		// construction, and no cheaper than a scan, which the planner
		// then prefers. A filter that needs every list to reach the
		// target is better ranked exactly, and called so.
		values = values[:len(values)-1]
	}
	m, err := s.smallestReaching(ctx, filtered, opts, knob, values)
	if err != nil {
		return err
	}
	t.FilteredRecall = m.recall
	if m.offIndex {
		t.FilteredUnmeasured = fmt.Sprintf(filteredOffPath, knob, m.offAt)
		return nil
	}
	t.FilteredMeasured, t.FilteredValue = true, m.value
	return nil
}
