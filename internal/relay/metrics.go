package relay

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	ttfb          *prometheus.HistogramVec
	upstream      *prometheus.CounterVec
	activeStreams prometheus.Gauge
	recordFailed  prometheus.Counter
	unjournaled   prometheus.Counter
	redelivered   prometheus.Counter
	queueWait     prometheus.Histogram
	feedFailing   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_requests_total", Help: "Requests answered, by endpoint and status.",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tollgate_request_duration_seconds", Help: "Time from request to last byte.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 15, 60, 300},
		}, []string{"endpoint"}),
		ttfb: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tollgate_upstream_ttfb_seconds", Help: "Time from request to the upstream's response headers.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 15, 60},
		}, []string{"endpoint"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_upstream_responses_total", Help: "Upstream responses by account and status.",
		}, []string{"account", "code"}),
		activeStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_active_streams", Help: "Upstream exchanges in progress.",
		}),
		recordFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_usage_record_fallbacks_total", Help: "Usage events recorded through the PostgreSQL fallback because Redis failed.",
		}),
		unjournaled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_usage_unjournaled_total", Help: "Usage events not kept in the local journal before delivery (no free slot, or larger than a slot): a proxy killed before delivering them would lose them.",
		}),
		feedFailing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_invalidation_feed_failing",
			Help: "1 while the proxy cannot read the cache invalidations recorded in PostgreSQL (a change whose Redis message is lost meanwhile waits for the database, or the cache's expiry).",
		}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_usage_redelivered_total", Help: "Usage events Redis had acknowledged shortly before it changed identity (restart, failover), stored again in PostgreSQL (recent.go).",
		}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tollgate_admission_wait_seconds", Help: "Time requests waited for a concurrency slot.",
			Buckets: []float64{0, .001, .01, .1, .5, 1, 5, 20},
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.ttfb, m.upstream, m.activeStreams, m.recordFailed, m.unjournaled, m.redelivered, m.queueWait, m.feedFailing)
	return m
}
