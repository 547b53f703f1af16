package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/outpostdata/outpost/controller/singlehost"
	"github.com/outpostdata/outpost/vectorstore"
)

func newFeatureStoreCommand(f *singleHostFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "featurestore",
		Aliases: []string{"fs"},
		Short:   "Ingest into, search and inspect feature stores",
	}
	cmd.AddCommand(newFSIngestCommand(f), newFSQueryCommand(f), newFSStatsCommand(f))
	return cmd
}

// openFeatureStore connects to a store's database through the single-host
// state directory.
func openFeatureStore(ctx context.Context, f *singleHostFlags, name string) (*vectorstore.Store, *pgxpool.Pool, error) {
	sd, err := f.open()
	if err != nil {
		return nil, nil, err
	}
	_, url, err := singlehost.FeatureStoreDatabase(ctx, sd, f.namespace, name)
	if err != nil {
		return nil, nil, err
	}
	pool, err := vectorstore.Connect(ctx, url)
	if err != nil {
		return nil, nil, fmt.Errorf("feature store %s: %w", name, err)
	}
	s, err := vectorstore.Open(ctx, pool, name)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return s, pool, nil
}

func newFSIngestCommand(f *singleHostFlags) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "ingest STORE --file F",
		Short: "Load a CSV, JSON Lines or Parquet file into a feature store, all or nothing",
		Long: `Loads every row of the file in one transaction: a newer event_time replaces
the latest values, every row goes to history, and a bad row (wrong dimension,
NaN, missing key, duplicate key and event time, wrong type) rejects the whole
file with the row and field named. The format follows the extension: .csv
(header row; embeddings as [0.1,0.2]), .jsonl, .parquet.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, pool, err := openFeatureStore(ctx, f, args[0])
			if err != nil {
				return err
			}
			defer pool.Close()
			progress, done := ingestProgressTo(cmd.ErrOrStderr())
			start := time.Now()
			res, err := s.IngestFile(ctx, file, vectorstore.IngestOptions{Progress: progress})
			done()
			if err != nil && !errors.Is(err, vectorstore.ErrCalibration) {
				return fmt.Errorf("nothing was ingested: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ingested %d rows into %s in %s: %d new, %d updated, %d older than the store (history only); %d versions added to history\n",
				res.Rows, s.Table(), time.Since(start).Round(time.Millisecond), res.Inserted, res.Updated, res.Stale, res.HistoryAppended)
			if t := res.Tuning; t != nil && t.Exact() {
				fmt.Fprintf(cmd.ErrOrStderr(), "search defaults: no %s finds 0.98 of the true neighbours on this data (%.2f at the largest tried), so searches rank exactly unless told otherwise\n", t.Knob, t.Recall)
			} else if t != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "search defaults: %s %d finds %.2f of the true neighbours of %d sampled rows\n", t.Knob, t.Value, t.Recall, t.Queries)
			}
			if t := res.Tuning; t != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), filteredDefaults(*t))
			}
			return err
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "CSV, JSON Lines or Parquet file")
	cmd.MarkFlagRequired("file")
	return cmd
}

// filteredDefaults says what an ingest measured for filtered searches,
// which search differently (the iterative scan) from unfiltered ones.
func filteredDefaults(t vectorstore.Tuning) string {
	switch {
	case t.FilteredExact():
		return fmt.Sprintf("search defaults with a filter: no %s finds 0.98 of the true neighbours passing a 1%% filter through the iterative scan (%.2f at the largest tried), so filtered searches rank exactly unless told otherwise", t.Knob, t.FilteredRecall)
	case t.FilteredMeasured && t.FilteredDefault() == 0:
		return fmt.Sprintf("search defaults with a filter: %s %d finds %.2f of the true neighbours passing a 1%% filter through the iterative scan, but unfiltered searches rank exactly, and so do filtered ones, which a broad filter makes like unfiltered", t.Knob, t.FilteredValue, t.FilteredRecall)
	case t.FilteredMeasured:
		return fmt.Sprintf("search defaults with a filter: %s %d finds %.2f of the true neighbours passing a 1%% filter through the iterative scan; filtered searches use %s %d, the larger of this and the unfiltered setting, which a broad filter needs", t.Knob, t.FilteredValue, t.FilteredRecall, t.Knob, t.FilteredDefault())
	}
	return fmt.Sprintf("search defaults with a filter: not measured (%s); filtered searches use the iterative scan at the defaults before any measurement", t.FilteredUnmeasured)
}

func newFSQueryCommand(f *singleHostFlags) *cobra.Command {
	var vector, asOf, output string
	var where []string
	var opts vectorstore.SearchOptions
	cmd := &cobra.Command{
		Use:   "query STORE --vector '[0.1,0.2,...]' [-k 10] [--where 'feature = value' ...] [--as-of TIME]",
		Short: "Find the nearest entities to a vector, with filters, now or as of a time",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			vec, err := parseVectorFlag(vector)
			if err != nil {
				return err
			}
			s, pool, err := openFeatureStore(ctx, f, args[0])
			if err != nil {
				return err
			}
			defer pool.Close()
			for _, w := range where {
				flt, err := s.ParseFilter(w)
				if err != nil {
					return err
				}
				opts.Filters = append(opts.Filters, flt)
			}
			if asOf != "" {
				if opts.AsOf, err = vectorstore.ParseTime(asOf); err != nil {
					return fmt.Errorf("--as-of: %w", err)
				}
			}
			res, err := s.Search(ctx, vec, opts)
			if err != nil {
				return err
			}
			return printResults(cmd.OutOrStdout(), s, res, output)
		},
	}
	cmd.Flags().StringVar(&vector, "vector", "", "query vector, as [0.1,0.2,...], or @FILE holding it")
	cmd.Flags().IntVarP(&opts.K, "k", "k", 10, "how many neighbours")
	cmd.Flags().StringArrayVar(&where, "where", nil, "filter 'feature OP value' (OP: = != < <= > >=); repeat to AND")
	cmd.Flags().StringVar(&asOf, "as-of", "", "answer from history as of this time (RFC 3339)")
	cmd.Flags().IntVar(&opts.EfSearch, "ef-search", 0, "hnsw.ef_search for this query (default: what the ingest that built the index measured on the store's rows, with --where through the iterative scan, or exact ranking when no value finds 0.98 of the true neighbours)")
	cmd.Flags().IntVar(&opts.MaxScanTuples, "max-scan-tuples", 0, "hnsw.max_scan_tuples for filtered search (default 20000)")
	cmd.Flags().IntVar(&opts.Probes, "probes", 0, "ivfflat.probes for this query (default: what the ingest that built the index measured on the store's rows, with --where through the iterative scan, or exact ranking when no value finds 0.98 of the true neighbours)")
	cmd.Flags().BoolVar(&opts.Exact, "exact", false, "scan instead of using the index: exact results")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.MarkFlagRequired("vector")
	return cmd
}

// parseVectorFlag reads --vector: the vector itself, or @FILE holding it.
func parseVectorFlag(v string) ([]float32, error) {
	if strings.HasPrefix(v, "@") {
		b, err := os.ReadFile(v[1:])
		if err != nil {
			return nil, fmt.Errorf("--vector: %w", err)
		}
		v = string(b)
	}
	vec, err := vectorstore.ParseVector(v)
	if err != nil {
		return nil, fmt.Errorf("--vector %q: want numbers like [0.1,0.2,0.3]", abbreviate(v))
	}
	return vec, nil
}

// printResults prints a search's results; -o json also says which path
// answered (see vectorstore.SearchPath).
func printResults(out io.Writer, s *vectorstore.Store, found vectorstore.SearchResult, format string) error {
	res := found.Results
	switch format {
	case "json":
		type item struct {
			Key       string         `json:"key"`
			Distance  float64        `json:"distance"`
			EventTime time.Time      `json:"event_time"`
			Features  map[string]any `json:"features"`
		}
		items := make([]item, len(res))
		for i, r := range res {
			items[i] = item{r.Key, r.Distance, r.EventTime, r.Features}
		}
		return printJSON(out, struct {
			Path    vectorstore.SearchPath `json:"path"`
			Index   string                 `json:"index,omitempty"`
			Results []item                 `json:"results"`
		}{found.Path, found.Index, items})
	case "table", "":
	default:
		return fmt.Errorf("-o %q: use table or json", format)
	}
	var names []string
	for _, f := range s.Spec().Features {
		names = append(names, f.Name)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "KEY\tDISTANCE\tEVENT_TIME\t%s\n", strings.ToUpper(strings.Join(names, "\t")))
	for _, r := range res {
		fmt.Fprintf(tw, "%s\t%.6f\t%s", r.Key, r.Distance, r.EventTime.UTC().Format(time.RFC3339))
		for _, n := range names {
			v := r.Features[n]
			if v == nil {
				v = ""
			}
			fmt.Fprintf(tw, "\t%v", v)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func newFSStatsCommand(f *singleHostFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "stats STORE",
		Short: "Show a feature store's rows, index size and state, and pgvector version",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, pool, err := openFeatureStore(ctx, f, args[0])
			if err != nil {
				return err
			}
			defer pool.Close()
			st, err := s.Stats(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				return printJSON(out, st)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "Store:\t%s\n", st.Name)
			fmt.Fprintf(tw, "Table:\t%s\n", st.Table)
			fmt.Fprintf(tw, "Rows:\t%d (history: %d versions)\n", st.Rows, st.HistoryRows)
			fmt.Fprintf(tw, "Embedding:\t%s(%d), %s distance\n", st.VectorType, st.Dimensions, st.Distance)
			state := st.IndexState
			if st.BuildPhase != "" {
				state += fmt.Sprintf(" (%s, %.0f%%)", st.BuildPhase, st.BuildPercent)
			}
			fmt.Fprintf(tw, "Index:\t%s, %s, %s\n", st.IndexType, state, humanBytes(st.IndexBytes))
			fmt.Fprintf(tw, "Table size:\t%s\n", humanBytes(st.TableBytes))
			build := "parallel"
			if !st.ParallelHNSWBuild {
				build = "serial (pgvector < 0.8.2, CVE-2026-3172)"
			}
			fmt.Fprintf(tw, "pgvector:\t%s, HNSW builds %s\n", st.PgvectorVersion, build)
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}
