package usageexport_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
)

// crashChildEnv makes the test binary act as a metering controller that
// meters the timeline until killed; see TestMain.
const crashChildEnv = "OUTPOST_USAGE_CRASH_CHILD_DB"

func TestMain(m *testing.M) {
	if url := os.Getenv(crashChildEnv); url != "" {
		os.Exit(crashChild(url, os.Getenv("OUTPOST_USAGE_CRASH_SITE")))
	}
	os.Exit(m.Run())
}

var (
	crashStart = time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC)
	crashEnd   = time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
)

// crashEvent is something that happens to an instance, which the
// controller's reconciler reports to the ledger when it happens.
type crashEvent struct {
	at   time.Time
	uid  string
	name string
	mvc  int64 // 0: deleted
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// crashTimeline is the life of three instances: creations, CPU changes and
// a deletion across the October/November boundary, at odd seconds.
var crashTimeline = []crashEvent{
	{at: at("2026-10-20T00:00:00Z"), uid: uidA, name: "a", mvc: 2000},
	{at: at("2026-10-21T10:17:03Z"), uid: uidB, name: "b", mvc: 250},
	{at: at("2026-10-29T23:59:30Z"), uid: uidA, name: "a", mvc: 4000},
	{at: at("2026-11-02T07:00:01Z"), uid: "0b7a1d1e-0000-4000-8000-00000000000c", name: "c", mvc: 1000},
	{at: at("2026-11-10T12:30:00Z"), uid: uidB, name: "b"},
	{at: at("2026-11-15T00:00:00Z"), uid: uidA, name: "a", mvc: 1500},
}

// crashSteps are the moments the controller acts: every event, and every
// hour when it samples.
func crashSteps() []time.Time {
	var steps []time.Time
	for t := crashStart; !t.After(crashEnd); t = t.Add(time.Hour) {
		steps = append(steps, t)
	}
	for _, e := range crashTimeline {
		steps = append(steps, e.at)
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].Before(steps[j]) })
	return slices.CompactFunc(steps, func(a, b time.Time) bool { return a.Equal(b) })
}

// crashChild is a metering controller for the ledger at url: at each step
// it reports the events of that moment to the ledger, as the reconciler
// does, and samples. The
// world's clock lives in the database and only moves forward after a step
// is done, so a controller killed anywhere restarts at the moment it died
// in, as a real one restarts in the present, never in the past. It prints
// the index of each step as it begins it, so the test can aim its kills
// across the whole run, and exits at crashEnd.
func crashChild(url, siteID string) int {
	ctx := context.Background()
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return fail(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS crash_world (one int PRIMARY KEY DEFAULT 1 CHECK (one = 1), now timestamptz NOT NULL);
		INSERT INTO crash_world (now) VALUES ('2026-10-20T00:00:00Z') ON CONFLICT DO NOTHING`); err != nil {
		return fail(err)
	}
	var now time.Time
	if err := pool.QueryRow(ctx, `SELECT now FROM crash_world`).Scan(&now); err != nil {
		return fail(err)
	}
	clock := &harness.Clock{}
	ledger := usageexport.NewLedger(pool, clock)
	s := &usageexport.Sampler{Pool: pool, Clock: clock, SiteID: siteID}
	for i, step := range crashSteps() {
		if step.Before(now) {
			continue
		}
		fmt.Println(i)
		clock.Set(step.Format(time.RFC3339))
		for _, e := range crashTimeline {
			if !e.at.Equal(step) {
				continue
			}
			if e.mvc == 0 {
				err = ledger.Deleted(ctx, e.uid)
			} else {
				err = ledger.Observe(ctx, instance(e.uid, e.name), shape(e.mvc))
			}
			if err != nil {
				return fail(err)
			}
		}
		if _, err := s.Sample(ctx); err != nil {
			return fail(err)
		}
		if _, err := pool.Exec(ctx, `UPDATE crash_world SET now = $1`, step); err != nil {
			return fail(err)
		}
	}
	return 0
}

// TestControllerKilledAtRandomPointsMetersTheSame kills a metering
// controller with SIGKILL at 20 random points of its run (in ledger writes,
// sampling transactions alike) and restarts it each time;
// the records, the backlog and the export totals must equal those of a run
// never interrupted.
func TestControllerKilledAtRandomPointsMetersTheSame(t *testing.T) {
	pg := harness.StartPostgres(t)
	key := newKey(t)
	siteID := usageexport.SiteID(key.Public())
	calm, calmURL := newLedgerDB(t, pg)
	crashy, crashyURL := newLedgerDB(t, pg)

	child := func(url string) (*exec.Cmd, *bufio.Reader) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+url, "OUTPOST_USAGE_CRASH_SITE="+siteID)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		must(t, err)
		must(t, cmd.Start())
		return cmd, bufio.NewReader(out)
	}
	cmd, _ := child(calmURL)
	must(t, cmd.Wait())

	// 20 kill points spread over the run's steps; each kill comes a
	// random 0-5 ms into its step, so it lands anywhere in the step's
	// ledger writes or sampling transaction.
	steps := len(crashSteps())
	rng := rand.New(rand.NewPCG(6, 20))
	var targets []int
	for len(targets) < 20 {
		if n := rng.IntN(steps); !slices.Contains(targets, n) {
			targets = append(targets, n)
		}
	}
	slices.Sort(targets)
	kills := 0
	var killedAt []string
	for _, target := range targets {
		cmd, out := child(crashyURL)
		for {
			line, err := out.ReadString('\n')
			if err != nil {
				t.Fatalf("controller exited before step %d: %v", target, err)
			}
			if n, _ := strconv.Atoi(strings.TrimSpace(line)); n >= target {
				break
			}
		}
		time.Sleep(time.Duration(rng.IntN(5000)) * time.Microsecond)
		must(t, cmd.Process.Kill())
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			kills++
		}
		var world time.Time
		must(t, crashy.QueryRow(context.Background(), `SELECT now FROM crash_world`).Scan(&world))
		killedAt = append(killedAt, world.Format("01-02T15:04:05"))
	}
	cmd, _ = child(crashyURL)
	must(t, cmd.Wait())
	t.Logf("killed the controller %d times mid-run, at simulated %v", kills, killedAt)
	if kills != 20 {
		t.Fatalf("only %d of 20 kills hit a running controller", kills)
	}

	a, b := recordIDs(t, calm), recordIDs(t, crashy)
	if len(a) == 0 || !slices.Equal(a, b) {
		t.Fatalf("uninterrupted run wrote %d records, the killed one %d, and they differ", len(a), len(b))
	}
	backlogA, err := usageexport.Backlog(context.Background(), calm)
	must(t, err)
	backlogB, err := usageexport.Backlog(context.Background(), crashy)
	must(t, err)
	if backlogA != int64(len(a)) || backlogB != int64(len(b)) {
		t.Fatalf("the hub's backlog holds %d and %d records of %d: a record was written outside it", backlogA, backlogB, len(a))
	}
	clock := harness.NewClock("2026-11-25T00:00:00Z")
	for _, month := range []string{"2026-10", "2026-11"} {
		x, y := exportMonth(t, calm, clock, key, month), exportMonth(t, crashy, clock, key, month)
		if x.Payload.Total != y.Payload.Total || x.Payload.Total.Records == 0 {
			t.Errorf("%s totals: uninterrupted %+v, killed %+v", month, x.Payload.Total, y.Payload.Total)
		}
	}
}
