package metrics

import "github.com/presencehub/presencehub/queues"

// snapshotOf copies the store's counts into the gauges' fixed order. It is
// the only place that knows the shape of queues.Stats.
func snapshotOf(st queues.Stats) snapshot {
	var s snapshot
	for i, status := range statuses {
		s.agents[i] = st.Agents[queues.Status(status)]
	}
	for q, queue := range queueLabels {
		c := st.Conversations[queues.Queue(queue)]
		s.conversations[q] = [2]int{c.Owned, c.Unowned}
	}
	return s
}
