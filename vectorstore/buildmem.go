package vectorstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// buildPlan is how an index build runs: serially on a pgvector with the
// parallel-build overflow, else with the instance's parallel maintenance
// workers; and with maintenance_work_mem raised so the build has the
// memory it needs.
type buildPlan struct {
	serial bool
	// memKB is the maintenance_work_mem the build sets, in kB; 0 leaves
	// the server's.
	memKB int64
}

const (
	kB = 1 << 10
	mB = 1 << 20
	// perWorkerMem is what PostgreSQL gives each participant of a
	// parallel index build at the least: below it, it launches fewer
	// workers (plan_create_index_workers).
	perWorkerMem = 32 * mB
	// shmReserve is what pgvector keeps out of maintenance_work_mem for
	// other objects in the parallel build's shared memory.
	shmReserve = 3 * mB
)

// graphBytes estimates the memory pgvector's HNSW graph takes while it
// builds: per element, the vector itself, and the neighbour lists with
// their bookkeeping, about 48 bytes per unit of m (2m neighbours on the
// ground layer and a few on the upper ones). Measured on pgvector 0.8.6 at
// m = 16 from the "no longer fits" NOTICE: 1,291 bytes a row at 128
// dimensions and 6,933 at 1536, which is 4 bytes a dimension plus 778.
// IVFFlat keeps no graph; its build sorts the vectors by list, which is
// fastest when they all fit.
func (s Spec) graphBytes(rows int64) int64 {
	elem := int64(4)
	if s.VectorType == HalfVec || s.indexedExpr() != "embedding" {
		elem = 2
	}
	per := elem*int64(s.Dimensions) + 8
	if s.Index.Type == HNSW {
		per += 48 * int64(s.Index.M)
	} else {
		per += 64
	}
	return rows * per
}

// planBuild decides the settings of an index build over rows rows.
//
// maintenance_work_mem: the estimated graph plus a quarter for the
// estimate's error, and at least perWorkerMem for each participant, so
// PostgreSQL does not cut the workers it launches. It is capped at twice
// shared_buffers: Outpost sizes shared_buffers at a quarter of the
// instance's memory (postgres.MemorySettings), so a build may then take a
// half, and with shared_buffers three quarters, leaving the last quarter
// for connections and the operating system. On a server Outpost did not
// size, shared_buffers is still the operator's statement of what the
// server may use. A graph larger than the cap is built partly on disk
// (pgvector's NOTICE says so), slower but within the server's memory. The
// server's own maintenance_work_mem is never lowered.
func (s *Store) planBuild(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, rows int64) (buildPlan, error) {
	var plan buildPlan
	version, err := PgvectorVersion(ctx, q)
	if err != nil {
		return plan, err
	}
	plan.serial = s.spec.Index.Type == HNSW && !ParallelHNSWBuildSafe(version)
	var mem, shared int64
	var workers int
	if err := q.QueryRow(ctx, `SELECT pg_size_bytes(current_setting('maintenance_work_mem')),
	pg_size_bytes(current_setting('shared_buffers')), current_setting('max_parallel_maintenance_workers')::int`).Scan(&mem, &shared, &workers); err != nil {
		return plan, fmt.Errorf("index build settings of %q: %w", s.spec.Name, err)
	}
	if plan.serial {
		workers = 0
	}
	want := s.spec.graphBytes(rows) * 5 / 4
	if workers > 0 {
		want = max(want+shmReserve, int64(workers+1)*perWorkerMem)
	}
	want = min(want, 2*shared)
	if want > mem {
		plan.memKB = want / kB
	}
	return plan, nil
}

// settings returns the SET statements of the plan; local makes them
// SET LOCAL, for a build inside a transaction.
func (p buildPlan) settings(local bool) []string {
	set := "SET "
	if local {
		set = "SET LOCAL "
	}
	var out []string
	if p.serial {
		out = append(out, set+"max_parallel_maintenance_workers = 0")
	}
	if p.memKB > 0 {
		out = append(out, fmt.Sprintf("%smaintenance_work_mem = '%dkB'", set, p.memKB))
	}
	return out
}
