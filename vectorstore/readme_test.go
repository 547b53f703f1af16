package vectorstore_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/vectorstore"
)

var sqlBlock = regexp.MustCompile("(?s)```sql\n(.*?)```")

// readmeSQL returns the README's SQL block that contains marker.
func readmeSQL(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range sqlBlock.FindAllStringSubmatch(string(b), -1) {
		if strings.Contains(m[1], marker) {
			return m[1]
		}
	}
	t.Fatalf("README.md has no SQL block containing %q", marker)
	return ""
}

// The README's advice on filters, checked on its own SQL and a store of
// its shape (products, 3 dimensions, a category): the iterative-scan SQL
// is answered by the HNSW index; once category is indexed, the B-tree SQL
// reads the 1% of rows that are shoes through the B-tree and ranks them
// exactly, and the Go API takes that path too.
func TestREADMEFilterAdviceHolds(t *testing.T) {
	_, pool := newDB(t)
	ctx := context.Background()
	rows := uniform(20000, 3, 9)
	shoes := 0
	for i := range rows {
		if rows[i].Category == "rare" {
			rows[i].Category = "shoes"
			shoes++
		}
	}
	spec := vectorstore.Spec{Name: "products", Dimensions: 3, Features: testFeatures}
	s := ensure(t, pool, spec)
	ingestRows(t, s, rows)

	iterative := readmeSQL(t, "SET hnsw.iterative_scan")
	set, query, _ := strings.Cut(iterative, ";\n")
	plan, keys := explainAndRun(t, pool, set, query)
	if !strings.Contains(plan, "products_embedding_idx") || len(keys) != 10 {
		t.Errorf("README's iterative-scan SQL: %d rows, plan\n%s\nwant 10 rows through products_embedding_idx", len(keys), plan)
	}

	spec.Features = append([]vectorstore.Feature{{Name: "category", Type: vectorstore.Text, Indexed: true}}, testFeatures[1:]...)
	s = ensure(t, pool, spec)
	if _, err := pool.Exec(ctx, "ANALYZE products"); err != nil {
		t.Fatal(err)
	}
	btree := readmeSQL(t, "AS MATERIALIZED (SELECT key, embedding FROM products")
	plan, keys = explainAndRun(t, pool, "", btree)
	if !strings.Contains(plan, "products_category_idx") || strings.Contains(plan, "products_embedding_idx") {
		t.Errorf("README's B-tree SQL, %d shoes in %d rows, plan:\n%s\nwant products_category_idx and not the vector index", shoes, len(rows), plan)
	}
	want := exactNeighbours(rows, []float32{0.1, 0.9, 0.2}, 10, func(r row) bool { return r.Category == "shoes" })
	if strings.Join(keys, ",") != strings.Join(want, ",") {
		t.Errorf("README's B-tree SQL found %v, want the exact %v", keys, want)
	}
	res, err := s.Search(ctx, []float32{0.1, 0.9, 0.2}, vectorstore.SearchOptions{Filters: []vectorstore.Filter{filter(t, s, "category = shoes")}})
	if err != nil || res.Path != vectorstore.PathBTree || res.Index != "products_category_idx" {
		t.Errorf("Search with category = shoes: path %s (%s), %v; want btree (products_category_idx)", res.Path, res.Index, err)
	}
}

// explainAndRun runs set (if any) and then EXPLAIN of query and query in
// one transaction, and returns the plan and the first column of the rows.
func explainAndRun(t *testing.T, pool interface {
	Begin(context.Context) (pgx.Tx, error)
}, set, query string) (string, []string) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if set != "" {
		if _, err := tx.Exec(ctx, set); err != nil {
			t.Fatalf("%s: %v", set, err)
		}
	}
	lines, err := tx.Query(ctx, "EXPLAIN "+query)
	if err != nil {
		t.Fatalf("EXPLAIN %s: %v", query, err)
	}
	plan, err := pgx.CollectRows(lines, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var k string
		var d float64
		return k, r.Scan(&k, &d)
	})
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return strings.Join(plan, "\n"), keys
}
