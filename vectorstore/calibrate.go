package vectorstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Search defaults measured on the store's own data. How many candidates an
// HNSW graph (hnsw.ef_search) or an IVFFlat index (ivfflat.probes) must
// look at to find most of the true neighbours depends on the data far more
// than on its size: 120 finds 0.975 of them on 20k random 48-dimensional
// vectors, while on 500k uniformly random 128-dimensional ones the graph
// pgvector builds with m 16 finds only 0.66 even at 1000, the most
// pgvector allows. No fixed default fits both, so after an index is built
// Calibrate measures it: it samples rows, moves each a little (see
// Calibrate), ranks the true neighbours of those queries
// exactly, and keeps the smallest setting whose answers hold at least
// tuningTarget of them. When none does, the index cannot answer well on
// this data and searches at the defaults rank exactly: slower, never
// wrong. Filtered searches, which walk the index with the iterative scan,
// are measured apart (see calibrate_filtered.go). An explicit EfSearch or
// Probes, or Exact, always wins.

// ErrCalibration is an ingest whose rows are committed but whose
// measurement of the search defaults failed: searches keep the defaults
// they had, and ingesting the same input again measures again.
var ErrCalibration = errors.New("measuring the search defaults failed")

// tuningTarget is the recall@10 the defaults must reach on the sample. It
// is above the 0.95 searches are meant to reach because the sample's
// queries are not new vectors: on 20k uniformly random 48-dimensional
// rows, 400 of them found 0.946–0.957 of their neighbours at ef_search 80
// where held-out rows found 0.919–0.930 (on clustered rows they found
// fewer than held-out ones, which errs the safe way), and the sample is
// small. Resampling those 400 showed how often a measurement would have
// chosen 80, too small: 5–21% of the time with 24 queries and a target of
// 0.97, 0.02–0.6% with 48 and 0.98.
const tuningTarget = 0.98

// tuningQueries is how many sampled rows Calibrate asks for their
// neighbours. Each costs two exact scans of the store (unfiltered and
// filtered).
const tuningQueries = 48

// tuningK is the k recall is measured at; a search for more neighbours
// scales the setting up (see scaledKnob).
const tuningK = 10

// Tuning is what Calibrate measured.
type Tuning struct {
	// Index is the index's signature (type and parameters) when measured:
	// a tuning of another index is ignored.
	Index string `json:"index"`
	// Knob is hnsw.ef_search or ivfflat.probes.
	Knob string `json:"knob"`
	// Value is the smallest setting tried that reached the target; 0 when
	// none did, and searches at the defaults rank exactly.
	Value int `json:"value"`
	// Recall is the recall@10 measured at Value, or at the largest setting
	// tried when Value is 0.
	Recall float64 `json:"recall"`
	// FilteredMeasured reports whether filtered searches were measured
	// too (see calibrate_filtered.go). A tuning recorded before they were,
	// or whose filtered measurement could not be made (FilteredUnmeasured
	// says why), leaves filtered searches at the defaults they have before
	// any measurement.
	FilteredMeasured bool `json:"filteredMeasured,omitempty"`
	// FilteredValue is the smallest setting whose iterative scan found
	// tuningTarget of the true neighbours under a filter of about 1%; 0
	// when none did, and filtered searches at the defaults rank exactly.
	FilteredValue int `json:"filteredValue,omitempty"`
	// FilteredRecall is the recall@10 measured at FilteredValue, or at
	// the last setting tried.
	FilteredRecall float64 `json:"filteredRecall,omitempty"`
	// FilteredUnmeasured is why filtered searches were not measured.
	FilteredUnmeasured string `json:"filteredUnmeasured,omitempty"`
	// Rows is how many rows the store had, and Added how many ingests
	// have added since: an ingest calibrates again once Added reaches
	// Rows, the store having doubled.
	Rows  int64 `json:"rows"`
	Added int64 `json:"added,omitempty"`
	// Queries is how many sampled rows were asked for their neighbours.
	Queries    int       `json:"queries"`
	MeasuredAt time.Time `json:"measuredAt"`
	// Took is how long the measurement ran.
	Took time.Duration `json:"took"`
}

// Exact reports whether searches at the defaults rank exactly because no
// setting of the index reached the target.
func (t Tuning) Exact() bool { return t.Value == 0 }

// tuningQuery is one query of a measurement: a sampled row moved by noise.
type tuningQuery struct {
	key    string
	vector []float32
	// within is the distance of the 10th true neighbour.
	within float64
}

// knobMeasure is what smallestReaching found.
type knobMeasure struct {
	// value is the smallest setting reaching tuningTarget, 0 if none did.
	value int
	// recall is the recall@10 at value, or at the last setting tried.
	recall float64
	// offIndex is a query the plan did not answer from the vector index
	// (the planner preferred another path), first at setting offAt.
	offIndex bool
	offAt    int
}

// smallestReaching tries the settings of knob in values, smallest first,
// with opts, on queries whose within is their true 10th neighbour's
// distance, and stops at the first whose recall@10 reaches tuningTarget.
// It notes a query the vector index did not answer: its answer says
// nothing about the index.
func (s *Store) smallestReaching(ctx context.Context, queries []tuningQuery, opts SearchOptions, knob string, values []int) (knobMeasure, error) {
	var m knobMeasure
	for _, v := range values {
		o := opts
		if knob == "hnsw.ef_search" {
			o.EfSearch = v
		} else {
			o.Probes = v
		}
		hits := 0
		for _, q := range queries {
			res, err := s.search(ctx, s.queryValue(q.vector), o, false)
			if err != nil {
				return knobMeasure{}, fmt.Errorf("%s %d: %w", knob, v, err)
			}
			if !res.Path.indexPath() && !m.offIndex {
				m.offIndex, m.offAt = true, v
			}
			// Ties count: with near-duplicates, another row at the same
			// distance as a true neighbour is as good an answer.
			tie := 1e-6*math.Abs(q.within) + 1e-9
			for _, r := range res.Results {
				if r.Distance <= q.within+tie {
					hits++
				}
			}
		}
		m.recall = float64(hits) / float64(tuningK*len(queries))
		if m.recall >= tuningTarget {
			m.value = v
			return m, nil
		}
	}
	return m, nil
}

// tuningCache keeps a store's tuning for a few seconds, so a search at the
// defaults does not read it every time.
type tuningCache struct {
	mu      sync.Mutex
	tuning  *Tuning
	fetched time.Time
}

const tuningCacheFor = 10 * time.Second

// knobValues are the settings Calibrate tries, smallest first.
func (s *Store) knobValues() (string, []int) {
	switch s.spec.Index.Type {
	case HNSW:
		return "hnsw.ef_search", []int{40, 80, 160, 320, 640, 1000}
	case IVFFlat:
		lists := s.spec.Index.Lists
		var out []int
		for p := max(1, int(math.Round(math.Sqrt(float64(lists))))); p < lists; p *= 2 {
			out = append(out, p)
		}
		return "ivfflat.probes", append(out, lists)
	}
	return "", nil
}

// Calibrate measures which setting of the store's index finds tuningTarget
// of the true 10 nearest neighbours of queries made from rows sampled from
// the store, records
// it for searches at the defaults, and returns it. A store without an
// index, or with fewer than tuningK+1 rows, has nothing to measure: it
// returns a zero Tuning and records nothing.
func (s *Store) Calibrate(ctx context.Context) (Tuning, error) {
	knob, values := s.knobValues()
	if knob == "" {
		return Tuning{}, nil
	}
	start := time.Now()
	var reltuples float64
	if err := s.pool.QueryRow(ctx, "SELECT reltuples FROM pg_class WHERE oid = $1::regclass", s.table).Scan(&reltuples); err != nil {
		return Tuning{}, fmt.Errorf("calibrate %q: %w", s.spec.Name, err)
	}
	// Bernoulli sampling of about four times the rows wanted, so that
	// the sample is spread over the whole table, not its first pages.
	pct := 100.0
	if reltuples > 0 {
		pct = min(100, 100*4*tuningQueries/reltuples)
	}
	// Ordered by a hash of the key, not at random: the same rows measure
	// the same, and defaults do not move between two measurements of
	// the same data by the luck of the draw.
	rows, err := s.pool.Query(ctx, fmt.Sprintf("SELECT key, embedding::real[] FROM %s TABLESAMPLE BERNOULLI (%g) REPEATABLE (7) ORDER BY md5(key) LIMIT %d", s.table, pct, tuningQueries))
	if err != nil {
		return Tuning{}, fmt.Errorf("calibrate %q: sample rows: %w", s.spec.Name, err)
	}
	var queries []tuningQuery
	for rows.Next() {
		var q tuningQuery
		if err := rows.Scan(&q.key, &q.vector); err != nil {
			rows.Close()
			return Tuning{}, fmt.Errorf("calibrate %q: sample rows: %w", s.spec.Name, err)
		}
		queries = append(queries, q)
	}
	if err := rows.Err(); err != nil {
		return Tuning{}, fmt.Errorf("calibrate %q: sample rows: %w", s.spec.Name, err)
	}
	var total int64
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM "+s.table).Scan(&total); err != nil {
		return Tuning{}, fmt.Errorf("calibrate %q: %w", s.spec.Name, err)
	}
	if total <= tuningK || len(queries) == 0 {
		return Tuning{}, nil
	}
	// A stored row is a poor query: it is a node of the graph, linked to
	// its own nearest neighbours when it was inserted, so the graph finds
	// them far more easily than a new vector's. Each query is a sampled row
	// moved by random noise about as far as its nearest neighbour is from
	// it, which is how far a new vector from the same data typically is
	// from the nearest stored one.
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range queries {
		q := &queries[i]
		nearest, err := s.nearestOther(ctx, q.key, q.vector)
		if err != nil {
			return Tuning{}, fmt.Errorf("calibrate %q: %w", s.spec.Name, err)
		}
		var d2 float64
		for j := range q.vector {
			d := float64(q.vector[j] - nearest[j])
			d2 += d * d
		}
		sigma := math.Sqrt(d2 / float64(len(q.vector)))
		for j := range q.vector {
			q.vector[j] += float32(rng.NormFloat64() * sigma)
		}
		res, err := s.search(ctx, s.queryValue(q.vector), SearchOptions{K: tuningK}, true)
		if err != nil {
			return Tuning{}, fmt.Errorf("calibrate %q: exact neighbours: %w", s.spec.Name, err)
		}
		if len(res.Results) < tuningK {
			// Rows deleted meanwhile: too few to measure.
			return Tuning{}, nil
		}
		q.within = res.Results[len(res.Results)-1].Distance
	}
	t := Tuning{Index: s.indexSignature(), Knob: knob, Rows: total, Queries: len(queries)}
	m, err := s.smallestReaching(ctx, queries, SearchOptions{K: tuningK}, knob, values)
	if err != nil {
		return Tuning{}, fmt.Errorf("calibrate %q: %w", s.spec.Name, err)
	}
	t.Value, t.Recall = m.value, m.recall
	if err := s.calibrateFiltered(ctx, queries, knob, values, &t); err != nil {
		// What was measured unfiltered still stands; filtered searches
		// keep the defaults they had before any measurement.
		t.FilteredMeasured, t.FilteredValue, t.FilteredUnmeasured = false, 0, "the measurement failed: "+err.Error()
	}
	t.MeasuredAt, t.Took = time.Now().UTC(), time.Since(start)
	raw, err := json.Marshal(t)
	if err != nil {
		return Tuning{}, err
	}
	// Recorded even when ctx ran out during the filtered measurement.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `INSERT INTO `+metaSchema+`.search_tuning (name, tuning) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET tuning = EXCLUDED.tuning`, s.spec.Name, raw); err != nil {
		return Tuning{}, fmt.Errorf("calibrate %q: record: %w", s.spec.Name, err)
	}
	s.tuningCache.mu.Lock()
	s.tuningCache.tuning, s.tuningCache.fetched = &t, time.Now()
	s.tuningCache.mu.Unlock()
	return t, nil
}

// ensureTuningWithin bounds the measurement Ensure makes: it holds up the
// reconcile of the store, and searches are right without it, only slower
// or less complete. Each query costs two exact scans, so the measurement
// grows with the store: on uniformly random 128-dimensional rows, where
// every setting is tried, it took 39 s on 500k rows (30 s with 24
// queries); the bound leaves room for several times that store, after an
// index build that itself takes minutes.
const ensureTuningWithin = 5 * time.Minute

// ensureTuning measures the search defaults of an index Ensure just built
// or rebuilt with other parameters. A store of at most tuningK rows has
// nothing to measure, at the cost of a count.
func (s *Store) ensureTuning(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, ensureTuningWithin)
	defer cancel()
	if _, err := s.Calibrate(ctx); err != nil {
		return fmt.Errorf("feature store %q: %w: %w", s.spec.Name, ErrCalibration, err)
	}
	return nil
}

// nearestOther is the vector of a row near the row of key, by the index
// at its default setting: only its distance is used, as a scale.
func (s *Store) nearestOther(ctx context.Context, key string, vector []float32) ([]float32, error) {
	res, err := s.search(ctx, s.queryValue(vector), SearchOptions{K: 2}, false)
	if err != nil {
		return nil, err
	}
	for _, r := range res.Results {
		if r.Key == key {
			continue
		}
		var v []float32
		if err := s.pool.QueryRow(ctx, "SELECT embedding::real[] FROM "+s.table+" WHERE key = $1", r.Key).Scan(&v); err != nil {
			return nil, fmt.Errorf("read row %q: %w", r.Key, err)
		}
		return v, nil
	}
	return vector, nil
}

// Tuning returns the store's recorded tuning for its current index, and
// false when there is none (never measured, or measured on an index built
// with other parameters).
func (s *Store) Tuning(ctx context.Context) (Tuning, bool, error) {
	s.tuningCache.mu.Lock()
	defer s.tuningCache.mu.Unlock()
	if time.Since(s.tuningCache.fetched) > tuningCacheFor {
		var raw []byte
		err := s.pool.QueryRow(ctx, "SELECT tuning FROM "+metaSchema+".search_tuning WHERE name = $1", s.spec.Name).Scan(&raw)
		switch {
		// A store that an older Outpost made, and Ensure has not
		// shaped since, has no table of search defaults yet.
		// A role no Ensure granted it to (a reader made by hand) cannot
		// read it: the defaults before any measurement serve it.
		case errors.Is(err, pgx.ErrNoRows), isCode(err, "42P01"), isCode(err, "42501"):
			s.tuningCache.tuning = nil
		case err != nil:
			return Tuning{}, false, fmt.Errorf("search defaults of %q: %w", s.spec.Name, err)
		default:
			var t Tuning
			if err := json.Unmarshal(raw, &t); err != nil {
				return Tuning{}, false, fmt.Errorf("search defaults of %q: %w", s.spec.Name, err)
			}
			s.tuningCache.tuning = &t
		}
		s.tuningCache.fetched = time.Now()
	}
	t := s.tuningCache.tuning
	if t == nil || t.Index != s.indexSignature() {
		return Tuning{}, false, nil
	}
	return *t, true, nil
}

// noteGrowth counts rows an ingest added toward the store's doubling,
// and reports whether the ingest should calibrate again: never measured
// for this index, or the store has doubled since.
func (s *Store) noteGrowth(ctx context.Context, inserted int64) (bool, error) {
	if knob, _ := s.knobValues(); knob == "" {
		return false, nil
	}
	var raw []byte
	err := s.pool.QueryRow(ctx, `UPDATE `+metaSchema+`.search_tuning
SET tuning = jsonb_set(tuning, '{added}', to_jsonb(coalesce((tuning->>'added')::bigint, 0) + $2))
WHERE name = $1 RETURNING tuning`, s.spec.Name, inserted).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return true, nil
	}
	if isCode(err, "42P01") || isCode(err, "42501") {
		// No table yet (a store Ensure has not shaped since an older
		// Outpost made it) or not this role's to write: the next Ensure
		// measures.
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("search defaults of %q: %w", s.spec.Name, err)
	}
	var t Tuning
	if err := json.Unmarshal(raw, &t); err != nil {
		return false, fmt.Errorf("search defaults of %q: %w", s.spec.Name, err)
	}
	return t.Index != s.indexSignature() || t.Added >= max(t.Rows, tuningK), nil
}

// scaledKnob is the setting a search for k neighbours uses when the
// caller gave none: the measured one, v, scaled for k beyond tuningK, since
// the candidates looked at must hold k neighbours, not ten.
func scaledKnob(v, k, limit int) int {
	if k > tuningK {
		v = int(math.Ceil(float64(v) * float64(k) / tuningK))
	}
	return min(v, limit)
}

// grantTuning lets role read the stores' search defaults, and the
// database's owner, which ingests, also record them.
func grantTuning(ctx context.Context, tx pgx.Tx, role string, write bool) error {
	q := "GRANT SELECT ON " + metaSchema + ".search_tuning TO " + ident(role)
	if write {
		q = "GRANT SELECT, INSERT, UPDATE ON " + metaSchema + ".search_tuning TO " + ident(role)
	}
	if _, err := tx.Exec(ctx, q); err != nil {
		return fmt.Errorf("let %s read search defaults: %s: %w", role, q, err)
	}
	return nil
}
