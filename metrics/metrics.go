package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "presencehub"

// RemovalDelayBuckets are the buckets of presencehub_ownership_removal_delay_seconds,
// in seconds. The promise is 2 minutes (offline grace of at most 90 s plus
// 30 s to notice a dead connection), so the buckets are dense around it and
// stop at 5 minutes: anything past that is a broken promise however late.
var RemovalDelayBuckets = []float64{1, 5, 10, 30, 60, 90, 120, 150, 180, 300}

// BroadcastBuckets are the buckets of presencehub_broadcast_duration_seconds:
// handing one event to every recipient's queue takes microseconds; a
// millisecond already means a very large workspace or lock contention.
var BroadcastBuckets = []float64{.00001, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05, .1, .5}

// CommitBuckets are the buckets of presencehub_store_commit_duration_seconds:
// a batch's write with its flush takes about a millisecond on a good disk;
// tens of milliseconds are a disk that stalls, and every change waiting
// on that batch waits as long.
var CommitBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}

// BatchBuckets are the buckets of presencehub_store_batch_requests: the
// store writes at most 512 requests in one batch.
var BatchBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}

// Metrics holds presencehub's collectors. It implements the hub's Observer
// (ConnOpened, ConnClosed, Rejected, Sent, BroadcastDuration, SlowConsumer)
// and wraps the store's Publisher (see Publisher); Commit is the store's
// CommitObserver. The zero value is not usable; call New.
type Metrics struct {
	handler http.Handler

	connections   prometheus.Gauge
	sent          prometheus.Counter
	broadcast     prometheus.Histogram
	slowConsumers prometheus.Counter
	rejected      counterSet
	commits       prometheus.Histogram
	batches       prometheus.Histogram

	ownershipChanges counterSet
	removalDelay     prometheus.Histogram
	transitions      map[[2]string]prometheus.Counter // by {to, reason}
	transitionTo     known
	transitionWhy    known

	// mu guards offlineSince.
	mu sync.Mutex
	// offlineSince remembers, per workspace and agent, the LastSeen of the
	// agent's latest transition to offline, until the agent comes back. The
	// store commits an offline transition and its ownership removals in one
	// batch, so most removals find it in the same Publish call; the
	// remembered value also covers the removals a later reconciliation sweep
	// makes. Bounded by maxRemembered.
	offlineSince map[agentKey]time.Time
}

// New registers presencehub's collectors, the Go runtime collector and the
// process collector on reg and returns the Metrics that feeds them. reg is a
// *prometheus.Registry rather than a Registerer because Handler must gather
// from the same registry it registered on; passing the two separately would
// allow them to differ.
//
// src is read at scrape time for the agent and conversation gauges; a nil
// src leaves those two metrics out. New panics if reg already holds
// collectors of the same names (a programming error, as with
// prometheus.MustRegister).
func New(reg *prometheus.Registry, src Source) *Metrics {
	m := &Metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "connections",
			Help:      "Open WebSocket connections.",
		}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "messages_sent_total",
			Help:      "Messages handed to WebSocket connections (one per event per recipient).",
		}),
		broadcast: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "broadcast_duration_seconds",
			Help:      "Time to hand one batch of events to every recipient's send queue.",
			Buckets:   BroadcastBuckets,
		}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "slow_consumer_disconnects_total",
			Help:      "Connections closed because they fell too far behind reading (close code 4008).",
		}),
		commits: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "store_commit_duration_seconds",
			Help:      "Time to write one batch of changes to the store, the flush to disk included: every change of the batch waits this long.",
			Buckets:   CommitBuckets,
		}),
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "store_batch_requests",
			Help:      "Requests that waited on one batch's write (group commit), those the rules refused included.",
			Buckets:   BatchBuckets,
		}),
		removalDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "ownership_removal_delay_seconds",
			Help:      "Time from an agent's last connection ending (or logout) to each of their new conversations being unowned by Remove Ownership.",
			Buckets:   RemovalDelayBuckets,
		}),
		transitions:   make(map[[2]string]prometheus.Counter),
		transitionTo:  newKnown(statuses),
		transitionWhy: newKnown(presenceReasons),
		offlineSince:  make(map[agentKey]time.Time),
	}
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace,
		Name:      "ws_rejected_total",
		Help:      "WebSocket connections and requests refused, by reason.",
	}, []string{"reason"})
	m.rejected = newCounterSet(rejected, rejectReasons)
	ownership := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace,
		Name:      "ownership_changes_total",
		Help:      "Conversation owner changes, by audit reason.",
	}, []string{"reason"})
	m.ownershipChanges = newCounterSet(ownership, ownershipReasons())
	transitions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace,
		Name:      "presence_transitions_total",
		Help:      "Agent presence transitions, by new status and reason.",
	}, []string{"to", "reason"})
	for _, to := range withOther(statuses) {
		for _, why := range withOther(presenceReasons) {
			m.transitions[[2]string{to, why}] = transitions.WithLabelValues(to, why)
		}
	}

	reg.MustRegister(
		m.connections, m.sent, m.broadcast, m.slowConsumers, rejected, m.commits, m.batches,
		ownership, m.removalDelay, transitions,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if src != nil {
		reg.MustRegister(newStateCollector(src))
	}
	m.handler = promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// A collector that fails must not take the whole scrape down: the
		// connection and removal figures matter most when something is
		// already wrong.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	return m
}

// Handler serves the registry passed to New in the Prometheus text (or
// OpenMetrics, when asked) format. Mount it at /metrics.
func (m *Metrics) Handler() http.Handler { return m.handler }

// ConnOpened counts a WebSocket connection that was accepted.
func (m *Metrics) ConnOpened() { m.connections.Inc() }

// ConnClosed counts a WebSocket connection that ended.
func (m *Metrics) ConnClosed() { m.connections.Dec() }

// Rejected counts a refused connection or request. reason should be one of
// the hub's Reject* constants; anything else is counted as "other".
func (m *Metrics) Rejected(reason string) { m.rejected.inc(reason) }

// Sent counts n messages handed to sockets.
func (m *Metrics) Sent(n int) {
	if n > 0 {
		m.sent.Add(float64(n))
	}
}

// BroadcastDuration observes how long one fan-out took.
func (m *Metrics) BroadcastDuration(d time.Duration) { m.broadcast.Observe(d.Seconds()) }

// SlowConsumer counts a connection closed for falling behind.
func (m *Metrics) SlowConsumer() { m.slowConsumers.Inc() }

// Commit observes one batch the store wrote: it implements
// queues.CommitObserver (Store.SetCommitObserver).
func (m *Metrics) Commit(requests int, took time.Duration) {
	m.commits.Observe(took.Seconds())
	m.batches.Observe(float64(requests))
}

// counterSet is a one-label CounterVec with every known value resolved up
// front, so counting is a map lookup and an atomic add, and an unknown
// value lands on "other" instead of creating a series.
type counterSet map[string]prometheus.Counter

func newCounterSet(vec *prometheus.CounterVec, values []string) counterSet {
	s := make(counterSet, len(values)+1)
	for _, v := range withOther(values) {
		s[v] = vec.WithLabelValues(v)
	}
	return s
}

func (s counterSet) inc(value string) {
	c, ok := s[value]
	if !ok {
		c = s[other]
	}
	c.Inc()
}
