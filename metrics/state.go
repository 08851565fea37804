package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/presencehub/presencehub/queues"
)

// Source is what the metrics need of the store: counts over every
// workspace, read at scrape time. *queues.Store implements it.
type Source interface {
	Stats() queues.Stats
}

// queueLabels and ownedLabels are the label values of
// presencehub_conversations, in the order of snapshot.conversations.
var (
	queueLabels = []string{string(queues.QueueNew), string(queues.QueuePending), string(queues.QueueResolved)}
	ownedLabels = []string{"true", "false"}
)

// snapshot is the part of queues.Stats the gauges show, in fixed order so
// every series is emitted on every scrape, zeros included (a series that
// vanishes at zero breaks alerts that compare against it).
type snapshot struct {
	agents        [3]int    // by statuses
	conversations [3][2]int // by queueLabels, then ownedLabels
}

// stateCollector emits the agent and conversation gauges from the store's
// counts at Collect time: the store already keeps them, so copying every
// change into gauges as it happens would be double bookkeeping that can
// drift.
type stateCollector struct {
	src           Source
	agents        *prometheus.Desc
	conversations *prometheus.Desc
}

func newStateCollector(src Source) *stateCollector {
	return &stateCollector{
		src: src,
		agents: prometheus.NewDesc(
			prometheus.BuildFQName(namespace, "", "agents"),
			"Agents by presence status, over all workspaces.",
			[]string{"status"}, nil),
		conversations: prometheus.NewDesc(
			prometheus.BuildFQName(namespace, "", "conversations"),
			"Conversations by queue and whether they have an owner, over all workspaces.",
			[]string{"queue", "owned"}, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.agents
	ch <- c.conversations
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := snapshotOf(c.src.Stats())
	for i, status := range statuses {
		ch <- prometheus.MustNewConstMetric(c.agents, prometheus.GaugeValue, float64(s.agents[i]), status)
	}
	for q, queue := range queueLabels {
		for o, owned := range ownedLabels {
			ch <- prometheus.MustNewConstMetric(c.conversations, prometheus.GaugeValue,
				float64(s.conversations[q][o]), queue, owned)
		}
	}
}
