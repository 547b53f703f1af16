package vectorstore

import (
	"encoding/json"
	"fmt"
)

// SearchPath names how PostgreSQL answered a search.
type SearchPath string

// Search paths.
const (
	// PathHNSW and PathIVFFlat: the vector index ordered the rows, with no
	// filter to apply.
	PathHNSW    SearchPath = "hnsw"
	PathIVFFlat SearchPath = "ivfflat"
	// PathHNSWIterative and PathIVFFlatIterative: the vector index ordered
	// the rows with pgvector's iterative scan on, and the filters were
	// applied to what it handed back.
	PathHNSWIterative    SearchPath = "hnsw_iterative_scan"
	PathIVFFlatIterative SearchPath = "ivfflat_iterative_scan"
	// PathBTree: the rows passing the filters were read through a B-tree
	// (an indexed feature's, or the key's) and ranked exactly.
	PathBTree SearchPath = "btree"
	// PathExact: every row (passing the filters) was ranked exactly by a
	// scan of the table: asked for (Exact, AsOf, a store without a vector
	// index), or the planner found it cheaper.
	PathExact SearchPath = "exact"
	// PathExactFallback: the iterative index scan gave up before finding K
	// rows that pass the filters (max_scan_tuples), and Search answered
	// again with an exact ranking.
	PathExactFallback SearchPath = "exact_fallback"
)

// planNode is the part of EXPLAIN (FORMAT JSON) that says what was read.
type planNode struct {
	NodeType  string     `json:"Node Type"`
	IndexName string     `json:"Index Name"`
	Plans     []planNode `json:"Plans"`
}

// planIndexes returns the indexes a plan, as EXPLAIN (FORMAT JSON) prints
// it, reads, outermost first.
func planIndexes(explain []byte) ([]string, error) {
	var doc []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(explain, &doc); err != nil || len(doc) != 1 {
		return nil, fmt.Errorf("read the search's plan: %w (%d plans)", err, len(doc))
	}
	var out []string
	var walk func(n planNode)
	walk = func(n planNode) {
		if n.IndexName != "" {
			out = append(out, n.IndexName)
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(doc[0].Plan)
	return out, nil
}

// pathOf names the path of a plan of the store's latest table: the vector
// index if the plan reads it (also the one a rebuild is making, which the
// planner may use before the swap), else any other index (the store's
// other indexes are B-trees), else a scan.
func (s *Store) pathOf(indexes []string, filtered bool) (SearchPath, string) {
	for _, name := range indexes {
		if name != s.indexName() && name != s.newIndexName() {
			continue
		}
		switch {
		case s.spec.Index.Type == IVFFlat && filtered:
			return PathIVFFlatIterative, name
		case s.spec.Index.Type == IVFFlat:
			return PathIVFFlat, name
		case filtered:
			return PathHNSWIterative, name
		default:
			return PathHNSW, name
		}
	}
	if len(indexes) > 0 {
		return PathBTree, indexes[0]
	}
	return PathExact, ""
}

// indexPath reports whether p is an approximate scan of the vector index.
func (p SearchPath) indexPath() bool {
	switch p {
	case PathHNSW, PathIVFFlat, PathHNSWIterative, PathIVFFlatIterative:
		return true
	}
	return false
}
