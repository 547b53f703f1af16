package vectorstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"
)

// Result is one entity a search or lookup returns.
type Result struct {
	Key string
	// Distance from the query vector; for inner_product it is the negative
	// inner product, as pgvector's <#> gives it.
	Distance  float64
	Features  map[string]any
	EventTime time.Time
	UpdatedAt time.Time
}

// Filter restricts a search to entities whose column compares to a value.
// The column is checked against the store's columns and quoted as an
// identifier; the value is always a query parameter.
type Filter struct {
	// Column is a feature, key or event_time.
	Column string
	// Op is one of = != <> < <= > >=.
	Op    string
	Value any
}

var filterOps = []string{"<=", ">=", "!=", "<>", "=", "<", ">"}

// ParseFilter reads "feature = value" as the CLI's --where takes it; the
// value is converted to the column's type (quotes around text optional).
func (s *Store) ParseFilter(expr string) (Filter, error) {
	for _, op := range filterOps {
		col, val, ok := strings.Cut(expr, op)
		if !ok {
			continue
		}
		col, val = strings.TrimSpace(col), strings.TrimSpace(val)
		if len(val) >= 2 && (val[0] == '\'' && val[len(val)-1] == '\'' || val[0] == '"' && val[len(val)-1] == '"') {
			val = val[1 : len(val)-1]
		}
		conv, err := s.filterConverter(col)
		if err != nil {
			return Filter{}, fmt.Errorf("--where %q: %w", expr, err)
		}
		v, err := conv(csvText(val))
		if err != nil {
			return Filter{}, fmt.Errorf("--where %q: value %w", expr, err)
		}
		if v == nil {
			return Filter{}, fmt.Errorf("--where %q: no value to compare with", expr)
		}
		return Filter{Column: col, Op: op, Value: v}, nil
	}
	return Filter{}, fmt.Errorf("--where %q: want COLUMN OP VALUE with OP one of = != < <= > >=, for example 'category = shoes'", expr)
}

func (s *Store) filterConverter(col string) (converter, error) {
	switch col {
	case "key":
		return keyConverter, nil
	case "event_time", "updated_at":
		return timeConverter, nil
	}
	f, ok := s.spec.feature(col)
	if !ok {
		return nil, fmt.Errorf("%q is not a column of feature store %q (features: %s)", col, s.spec.Name, strings.Join(s.columns()[3:], ", "))
	}
	if f.Type == JSONB {
		return nil, fmt.Errorf("feature %q is jsonb; filter on it with SQL", col)
	}
	return featureConverter(f.Type), nil
}

// SearchOptions tune a search. The zero value asks for 10 neighbours with
// the server's settings.
type SearchOptions struct {
	// K is how many neighbours to return; 0 means 10.
	K int
	// Filters are ANDed.
	Filters []Filter
	// EfSearch sets hnsw.ef_search for this query (1–1000); 0 takes what
	// Calibrate measured on the store's data (see calibrate.go; with
	// filters, what it measured through the iterative scan, see
	// calibrate_filtered.go), or before any measurement picks it by the
	// store's size (see defaultEfSearchSQL), and at least 2×K.
	EfSearch int
	// MaxScanTuples sets hnsw.max_scan_tuples, how far an iterative scan
	// goes looking for rows that pass the filters; 0 keeps 20,000.
	MaxScanTuples int
	// Probes sets ivfflat.probes; 0 takes what Calibrate measured (with
	// filters, through the iterative scan), or
	// before any measurement the square root of the lists, pgvector's
	// recommended start (the server's default, 1, misses many neighbours
	// that sit near a list's edge).
	Probes int
	// AsOf answers from history: each entity as it was at that time.
	// Search as of a time is exact (history has no vector index).
	AsOf time.Time
	// Exact skips the index: a full scan, exact results.
	Exact bool

	// sampleFilter is a predicate in SQL that Calibrate ANDs to the
	// filters to measure filtered searches (see calibrate_filtered.go);
	// never set from outside the package.
	sampleFilter string
}

// filtered reports whether the search has a filter, so that it needs the
// iterative scan.
func (o SearchOptions) filtered() bool { return len(o.Filters) > 0 || o.sampleFilter != "" }

// SearchResult is what Search found and how.
type SearchResult struct {
	// Results are the nearest entities, nearest first.
	Results []Result
	// Path is how PostgreSQL answered, read from the plan of the very
	// statement that ran (see Search).
	Path SearchPath
	// Index is the index the plan read, "" for a scan.
	Index string
}

// ParseVector reads a query vector as ingest reads a CSV embedding,
// pgvector's text form "[0.1,0.2]", so a vector copied out of a file or
// psql works as it is. NaN and infinities are refused here, as pgvector
// refuses them, rather than by the server after a round trip.
func ParseVector(s string) ([]float32, error) {
	vec, err := parseVectorText(s)
	if err != nil {
		return nil, err
	}
	for i, f := range vec {
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return nil, fmt.Errorf("element %d is %v; a vector's elements must be finite numbers", i, f)
		}
	}
	return vec, nil
}

// Search returns the K entities nearest to vector, nearest first, and
// which path answered. With filters it uses pgvector's iterative index
// scans (relaxed order, sorted again here). When a filtered column has a
// B-tree (an Indexed feature, or the key) and PostgreSQL estimates that at
// most exactMatchLimit rows pass the filters, it reads those rows through
// the B-tree and ranks them exactly instead: exact results, and cheaper
// than walking the vector index past the rows that fail the filters.
// Otherwise a filtered search that sets no EfSearch or Probes takes the
// setting Calibrate measured for the iterative scan under a filter, or,
// when no setting reached the target, ranks exactly (PathExact). It
// returns K rows whenever K matching rows exist within max_scan_tuples; if
// the iterative scan still comes up short it answers exactly instead
// (PathExactFallback).
func (s *Store) Search(ctx context.Context, vector []float32, opts SearchOptions) (SearchResult, error) {
	if len(vector) != s.spec.Dimensions {
		return SearchResult{}, fmt.Errorf("query vector has %d dimensions; feature store %q has %d", len(vector), s.spec.Name, s.spec.Dimensions)
	}
	if opts.K == 0 {
		opts.K = 10
	}
	if opts.K < 0 || opts.K > 10000 {
		return SearchResult{}, fmt.Errorf("k %d: want 1 to 10000", opts.K)
	}
	if opts.EfSearch < 0 || opts.EfSearch > 1000 {
		return SearchResult{}, fmt.Errorf("ef_search %d: want 1 to 1000", opts.EfSearch)
	}
	if err := s.checkFilters(opts.Filters); err != nil {
		return SearchResult{}, err
	}
	q := s.queryValue(vector)
	if !opts.AsOf.IsZero() {
		if err := s.checkAsOf(opts.AsOf); err != nil {
			return SearchResult{}, err
		}
		return s.search(ctx, q, opts, true)
	}
	exact := opts.Exact || s.spec.Index.Type == NoIndex
	if !exact && len(opts.Filters) > 0 {
		few, err := s.fewMatches(ctx, opts.Filters)
		if err != nil {
			return SearchResult{}, err
		}
		exact = few
	}
	if !exact {
		var err error
		if exact, err = s.applyTuning(ctx, &opts); err != nil {
			return SearchResult{}, err
		}
	}
	res, err := s.search(ctx, q, opts, exact)
	if err != nil || !res.Path.indexPath() || len(opts.Filters) == 0 || len(res.Results) == opts.K {
		return res, err
	}
	// The iterative scan gave up (max_scan_tuples) before finding K rows
	// that pass the filters; the exact answer may hold more.
	res, err = s.search(ctx, q, opts, true)
	res.Path = PathExactFallback
	return res, err
}

// queryValue is vector as the parameter type of the store's embeddings.
func (s *Store) queryValue(vector []float32) any {
	if s.spec.VectorType == HalfVec {
		return pgvector.NewHalfVector(vector)
	}
	return pgvector.NewVector(vector)
}

// applyTuning fills in the index setting the caller left at its default
// from what Calibrate measured, for a filtered search what it measured
// through the iterative scan, and reports whether the search must rank
// exactly because no setting of the index reached the target on this
// data. Without a measurement the size-based defaults apply.
func (s *Store) applyTuning(ctx context.Context, opts *SearchOptions) (exact bool, err error) {
	switch {
	case s.spec.Index.Type == HNSW && opts.EfSearch == 0, s.spec.Index.Type == IVFFlat && opts.Probes == 0:
	default:
		return false, nil
	}
	t, ok, err := s.Tuning(ctx)
	if err != nil || !ok {
		return false, err
	}
	value := t.Value
	if opts.filtered() {
		if !t.FilteredMeasured {
			// Recorded before filtered searches were measured, or
			// not measurable on this store: the iterative scan keeps
			// the defaults it had before any measurement.
			return false, nil
		}
		value = t.FilteredDefault()
	}
	if value == 0 {
		return true, nil
	}
	if s.spec.Index.Type == HNSW {
		opts.EfSearch = scaledKnob(value, opts.K, 1000)
	} else {
		opts.Probes = scaledKnob(value, opts.K, s.spec.Index.Lists)
	}
	return false, nil
}

func (s *Store) checkFilters(filters []Filter) error {
	for _, f := range filters {
		if !isFilterOp(f.Op) {
			return fmt.Errorf("filter on %s: operator %q: want = != < <= > >=", f.Column, f.Op)
		}
		if _, err := s.filterConverter(f.Column); err != nil {
			return err
		}
	}
	return nil
}

// whereSQL is the WHERE clause of filters whose values are parameters
// from $first on.
func whereSQL(filters []Filter, first int) string {
	var where []string
	for i, f := range filters {
		where = append(where, fmt.Sprintf("%s %s $%d", ident(f.Column), f.Op, first+i))
	}
	if len(where) == 0 {
		return ""
	}
	return "WHERE " + strings.Join(where, " AND ")
}

func filterValues(filters []Filter) []any {
	out := make([]any, len(filters))
	for i, f := range filters {
		out[i] = f.Value
	}
	return out
}

// exactMatchLimit is how many matching rows Search still ranks exactly,
// read through a B-tree, rather than walk the vector index: a ranking of
// 10,000 rows costs about what an iterative scan pays to find 10 rows that
// pass a 1% filter, and is exact (test/bench measures both).
const exactMatchLimit = 10000

// fewMatches reports whether a filtered column has a B-tree and
// PostgreSQL estimates that at most exactMatchLimit rows pass the
// filters. PostgreSQL's own choice between the B-tree and the vector
// index goes to the vector index on large tables even for a 1% filter
// (test/bench reports its plan at 500k rows), where the iterative scan
// finds fewer of the true neighbours, and more slowly.
func (s *Store) fewMatches(ctx context.Context, filters []Filter) (bool, error) {
	btree := false
	for _, f := range filters {
		feat, ok := s.spec.feature(f.Column)
		btree = btree || (f.Column == "key" || ok && feat.Indexed) && f.Op != "!=" && f.Op != "<>"
	}
	if !btree {
		return false, nil
	}
	var plan []byte
	if err := s.pool.QueryRow(ctx, "EXPLAIN (FORMAT JSON) SELECT 1 FROM "+s.table+" "+whereSQL(filters, 1), filterValues(filters)...).Scan(&plan); err != nil {
		return false, fmt.Errorf("search %q: estimate the rows passing the filters: %w", s.spec.Name, err)
	}
	var doc []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	if err := json.Unmarshal(plan, &doc); err != nil || len(doc) != 1 {
		return false, fmt.Errorf("search %q: read the estimate of the rows passing the filters: %w", s.spec.Name, err)
	}
	return doc[0].Plan.Rows <= exactMatchLimit, nil
}

// search runs one search statement. exact orders by an expression no
// index covers, so no vector index can answer; the filters may still be
// read through a B-tree.
//
// The path is known from the plan of the statement itself: the settings,
// EXPLAIN (FORMAT JSON) of the statement and the statement run in one
// transaction, with the same parameters, and with plan_cache_mode
// force_custom_plan, so that the run is planned afresh for these values
// exactly as EXPLAIN planned it (a cached generic plan could differ).
func (s *Store) search(ctx context.Context, q any, opts SearchOptions, exact bool) (SearchResult, error) {
	args := append([]any{q}, filterValues(opts.Filters)...)
	where := whereSQL(opts.Filters, 2)
	switch {
	case opts.sampleFilter != "" && where == "":
		where = "WHERE " + opts.sampleFilter
	case opts.sampleFilter != "":
		where += " AND " + opts.sampleFilter
	}
	args = append(args, opts.K)
	limit := fmt.Sprintf("$%d", len(args))
	dist := fmt.Sprintf("%s %s %s", s.spec.indexedExpr(), s.spec.distanceOp(), s.spec.queryParam("$1"))
	var sql string
	switch {
	case !opts.AsOf.IsZero():
		args = append(args, opts.AsOf)
		sql = fmt.Sprintf(`WITH asof AS (
	SELECT DISTINCT ON (key) * FROM %s WHERE event_time <= $%d ORDER BY key, event_time DESC)
SELECT key, (%s)::float8, event_time, updated_at%s FROM asof %s ORDER BY 2 LIMIT %s`,
			s.history, len(args), dist, s.selectFeatures(""), where, limit)
	case exact:
		// Ordering by an expression the index does not cover makes the
		// planner rank every matching row: exact, whatever the
		// session's settings say.
		sql = fmt.Sprintf(`SELECT key, (%s)::float8 AS d, event_time, updated_at%s FROM %s %s ORDER BY (%s) + 0 LIMIT %s`,
			dist, s.selectFeatures(""), s.table, where, dist, limit)
	default:
		sql = fmt.Sprintf(`SELECT key, (%s)::float8, event_time, updated_at%s FROM %s %s ORDER BY %s LIMIT %s`,
			dist, s.selectFeatures(""), s.table, where, dist, limit)
	}

	// A batch runs in one implicit transaction, so set_config(..., true)
	// is SET LOCAL for the statements after it, in a single round trip.
	settings := append(s.settings(opts, exact), [2]string{"plan_cache_mode", "force_custom_plan"})
	var names, values []string
	for _, kv := range settings {
		names, values = append(names, kv[0]), append(values, kv[1])
	}
	b := &pgx.Batch{}
	if !exact && s.spec.Index.Type == HNSW && opts.EfSearch == 0 {
		b.Queue(setSettingsSQL+defaultEfSearchSQL, names, values, s.table, opts.K)
	} else {
		b.Queue(setSettingsSQL, names, values)
	}
	b.Queue("EXPLAIN (FORMAT JSON) "+sql, args...)
	b.Queue(sql, args...)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return SearchResult{}, fmt.Errorf("search %q: settings %v: %w", s.spec.Name, names, err)
	}
	var plan []byte
	if err := br.QueryRow().Scan(&plan); err != nil {
		return SearchResult{}, fmt.Errorf("search %q: plan: %w", s.spec.Name, err)
	}
	indexes, err := planIndexes(plan)
	if err != nil {
		return SearchResult{}, fmt.Errorf("search %q: %w", s.spec.Name, err)
	}
	rows, err := br.Query()
	if err != nil {
		return SearchResult{}, fmt.Errorf("search %q: %w", s.spec.Name, err)
	}
	res := SearchResult{}
	if res.Results, err = s.scanResults(rows); err != nil {
		return SearchResult{}, fmt.Errorf("search %q: %w", s.spec.Name, err)
	}
	res.Path, res.Index = s.pathOf(indexes, opts.filtered())
	if !opts.AsOf.IsZero() {
		// The history view has no vector index, and an index its plan
		// reads serves DISTINCT ON (key), not the filters: every
		// version of then is ranked exactly.
		res.Path, res.Index = PathExact, ""
	}
	if res.Path.indexPath() {
		// relaxed_order and IVFFlat's lists may hand rows back slightly
		// out of order.
		slices.SortStableFunc(res.Results, func(a, b Result) int { return cmp.Compare(a.Distance, b.Distance) })
	}
	return res, nil
}

// setSettingsSQL sets a search's settings, names $1 and values $2, for
// its transaction.
const setSettingsSQL = "SELECT set_config(n, v, true) FROM unnest($1::text[], $2::text[]) AS s(n, v)"

// defaultEfSearchSQL, appended to setSettingsSQL, sets hnsw.ef_search by
// the size of table $3 for k $4, for a store Calibrate has not measured
// yet: a graph search must look at more candidates to find the same share
// of the true neighbours among more rows. The size is pg_class.reltuples,
// read in the same statement so it costs no round trip.
const defaultEfSearchSQL = `
UNION ALL SELECT set_config('hnsw.ef_search', least(1000, greatest(2 * $4::int,
	CASE WHEN reltuples < 100000 THEN 120 WHEN reltuples < 1000000 THEN 240 ELSE 400 END))::text, true)
FROM pg_class WHERE oid = $3::regclass`

// settings are the per-query planner settings of a search.
func (s *Store) settings(opts SearchOptions, exact bool) [][2]string {
	if exact {
		return nil
	}
	var out [][2]string
	if opts.sampleFilter != "" {
		// Calibrate measures the index: without statistics on the
		// sample filter, and at the larger settings, which pgvector
		// costs higher, the planner may rank every row instead, which
		// tells nothing of the index (see calibrate_filtered.go).
		out = append(out, [2]string{"enable_seqscan", "off"})
	}
	switch s.spec.Index.Type {
	case HNSW:
		if opts.EfSearch > 0 {
			out = append(out, [2]string{"hnsw.ef_search", strconv.Itoa(opts.EfSearch)})
		}
		if opts.filtered() {
			// relaxed_order lets the scan hand back matches as it meets
			// them instead of holding them to keep the order strict; on
			// a selective filter it is several times faster. search sorts
			// the k rows by distance again, so the order callers see is
			// exact.
			out = append(out, [2]string{"hnsw.iterative_scan", "relaxed_order"})
		}
		if opts.MaxScanTuples > 0 {
			out = append(out, [2]string{"hnsw.max_scan_tuples", strconv.Itoa(opts.MaxScanTuples)})
		}
	case IVFFlat:
		probes := opts.Probes
		if probes == 0 {
			probes = max(1, int(math.Round(math.Sqrt(float64(s.spec.Index.Lists)))))
		}
		out = append(out, [2]string{"ivfflat.probes", strconv.Itoa(probes)})
		if opts.filtered() {
			// ivfflat offers relaxed_order only: search sorts the rows
			// by distance again.
			out = append(out, [2]string{"ivfflat.iterative_scan", "relaxed_order"})
		}
	}
	return out
}

func isFilterOp(op string) bool {
	for _, o := range filterOps {
		if o == op {
			return true
		}
	}
	return false
}
