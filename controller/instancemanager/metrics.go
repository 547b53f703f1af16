package instancemanager

import (
	"context"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/outpostdata/outpost/controller/archiving"
)

var (
	upDesc = prometheus.NewDesc("outpost_instance_up",
		"1 when postgres answered a query during this scrape.", nil, nil)
	readyDesc = prometheus.NewDesc("outpost_instance_ready",
		"1 when postgres answers and the configuration is applied.", nil, nil)
	restartsDesc = prometheus.NewDesc("outpost_instance_restarts_total",
		"Times the supervisor restarted a postgres that died.", nil, nil)
	connectionsDesc = prometheus.NewDesc("outpost_instance_connections",
		"Client connections to postgres, by state.", []string{"state"}, nil)
	dbSizeDesc = prometheus.NewDesc("outpost_instance_database_size_bytes",
		"Size of each database.", []string{"database"}, nil)
)

// archiverMetrics are the archiver's samples, unlabelled: a pod serves one
// instance.
var archiverMetrics = archiving.NewMetrics()

// collector asks postgres at scrape time, so every sample is current.
type collector struct{ m *Manager }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{upDesc, readyDesc, restartsDesc, connectionsDesc, dbSizeDesc} {
		ch <- d
	}
	archiverMetrics.Describe(ch)
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st := c.m.check(ctx)
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, b2f(st.PostgresUp))
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, b2f(st.Ready))
	ch <- prometheus.MustNewConstMetric(restartsDesc, prometheus.CounterValue, float64(st.Restarts))
	if a := c.m.archiving(); a != nil {
		archiverMetrics.Collect(ch, a)
	}
	conn, err := pgx.Connect(ctx, c.m.server.URL("postgres"))
	if err != nil {
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1`)
	if err == nil {
		for rows.Next() {
			var state string
			var n int64
			if rows.Scan(&state, &n) == nil {
				ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(n), state)
			}
		}
		rows.Close()
	}
	rows, err = conn.Query(ctx, `SELECT datname, pg_database_size(datname) FROM pg_database WHERE datallowconn AND NOT datistemplate`)
	if err == nil {
		sizes, _ := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
			Name string
			Size int64
		}])
		for _, s := range sizes {
			ch <- prometheus.MustNewConstMetric(dbSizeDesc, prometheus.GaugeValue, float64(s.Size), s.Name)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *Manager) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{m}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
