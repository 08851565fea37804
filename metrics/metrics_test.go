package metrics

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/presencehub/presencehub/queues"
)

// fakeSource returns fixed counts.
type fakeSource struct{ stats queues.Stats }

func (f fakeSource) Stats() queues.Stats { return f.stats }

// recorder is a downstream Publisher that keeps what it was given.
type recorder struct {
	mu      sync.Mutex
	batches [][]queues.Event
}

func (r *recorder) Publish(_ string, events []queues.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, events)
}

func newTest(t *testing.T, src Source) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return New(reg, src), reg
}

// family gathers reg and returns the family called name.
func family(t *testing.T, reg *prometheus.Registry, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	t.Fatalf("metric %s not gathered", name)
	return nil
}

// series finds the series of name whose labels are exactly labels
// ("k=v" pairs).
func series(t *testing.T, reg *prometheus.Registry, name string, labels ...string) *dto.Metric {
	t.Helper()
	want := map[string]string{}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		want[k] = v
	}
	for _, m := range family(t, reg, name).GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		match := true
		for _, lp := range m.GetLabel() {
			if want[lp.GetName()] != lp.GetValue() {
				match = false
			}
		}
		if match {
			return m
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return nil
}

func value(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	m := series(t, reg, name, labels...)
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s%v is neither counter nor gauge", name, labels)
	return 0
}

func histogram(t *testing.T, reg *prometheus.Registry, name string) *dto.Histogram {
	t.Helper()
	return series(t, reg, name).GetHistogram()
}

func TestObserver(t *testing.T) {
	m, reg := newTest(t, nil)
	m.ConnOpened()
	m.ConnOpened()
	m.ConnOpened()
	m.ConnClosed()
	m.Rejected("origin")
	m.Rejected("origin")
	m.Rejected("Robert'); DROP TABLE") // never a raw value as a label
	m.Sent(3)
	m.Sent(0)
	m.BroadcastDuration(250 * time.Microsecond)
	m.SlowConsumer()

	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"presencehub_connections", nil, 2},
		{"presencehub_ws_rejected_total", []string{"reason=origin"}, 2},
		{"presencehub_ws_rejected_total", []string{"reason=other"}, 1},
		{"presencehub_ws_rejected_total", []string{"reason=bad_token"}, 0},
		{"presencehub_messages_sent_total", nil, 3},
		{"presencehub_slow_consumer_disconnects_total", nil, 1},
	}
	for _, c := range checks {
		if got := value(t, reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v: got %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := len(family(t, reg, "presencehub_ws_rejected_total").GetMetric()); got != len(rejectReasons)+1 {
		t.Errorf("ws_rejected_total series: got %d, want %d", got, len(rejectReasons)+1)
	}
	h := histogram(t, reg, "presencehub_broadcast_duration_seconds")
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 0.00025 {
		t.Errorf("broadcast histogram: got count %d sum %v, want 1 and 0.00025", h.GetSampleCount(), h.GetSampleSum())
	}
}

func TestCommit(t *testing.T) {
	m, reg := newTest(t, nil)
	m.Commit(3, 2*time.Millisecond)
	m.Commit(40, 30*time.Millisecond)
	h := histogram(t, reg, "presencehub_store_commit_duration_seconds")
	if h.GetSampleCount() != 2 || math.Abs(h.GetSampleSum()-0.032) > 1e-9 {
		t.Errorf("commit histogram: got count %d sum %v, want 2 and 0.032", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, b := range h.GetBucket() {
		want := uint64(0)
		switch {
		case b.GetUpperBound() >= 0.03:
			want = 2
		case b.GetUpperBound() >= 0.002:
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("commit bucket le=%v: got %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	b := histogram(t, reg, "presencehub_store_batch_requests")
	if b.GetSampleCount() != 2 || b.GetSampleSum() != 43 {
		t.Errorf("batch histogram: got count %d sum %v, want 2 and 43", b.GetSampleCount(), b.GetSampleSum())
	}
}

// Every label value is declared before its first event, so dashboards and
// alerts see zeros rather than missing series.
func TestPredeclared(t *testing.T) {
	_, reg := newTest(t, nil)
	for _, r := range queues.OwnershipReasons {
		if got := value(t, reg, "presencehub_ownership_changes_total", "reason="+string(r)); got != 0 {
			t.Errorf("ownership_changes_total{reason=%s}: got %v, want 0", r, got)
		}
	}
	for _, to := range statuses {
		for _, why := range presenceReasons {
			value(t, reg, "presencehub_presence_transitions_total", "to="+to, "reason="+why)
		}
	}
	if got := len(family(t, reg, "presencehub_presence_transitions_total").GetMetric()); got != 4*(len(presenceReasons)+1) {
		t.Errorf("presence_transitions_total series: got %d, want %d", got, 4*(len(presenceReasons)+1))
	}
}

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func offline(agent, reason string, lastSeen, at time.Time) queues.Event {
	return queues.Event{
		Kind: queues.EventPresence, At: at, Actor: queues.System,
		Presence: &queues.PresenceChange{Agent: agent, From: queues.StatusOnline, To: queues.StatusOffline, Reason: reason, LastSeen: lastSeen},
	}
}

func online(agent string, at time.Time) queues.Event {
	return queues.Event{
		Kind: queues.EventPresence, At: at,
		Presence: &queues.PresenceChange{Agent: agent, From: queues.StatusOffline, To: queues.StatusOnline, Reason: "connected"},
	}
}

func convEvent(id string, reason queues.Reason, prevOwner, owner string, at time.Time) queues.Event {
	return queues.Event{
		Kind: queues.EventConversation, At: at, Reason: reason,
		Conv: &queues.Conversation{ID: id, Queue: queues.QueueNew, Owner: owner},
		Prev: &queues.ConvState{Queue: queues.QueueNew, Owner: prevOwner},
	}
}

func TestPublisherCountsAndForwards(t *testing.T) {
	m, reg := newTest(t, nil)
	next := &recorder{}
	p := m.Publisher(next)

	batch := []queues.Event{
		offline("bea", "grace_expired", t0, t0.Add(90*time.Second)),
		convEvent("c1", queues.ReasonLogout, "bea", "", t0.Add(90*time.Second)),
		convEvent("c2", queues.ReasonLogout, "bea", "", t0.Add(90*time.Second)),
		convEvent("c3", queues.ReasonManualAssign, "", "al", t0),
		convEvent("c4", queues.ReasonManualAssign, "al", "bea", t0),
		// A move keeps the owner: no change.
		convEvent("c5", queues.ReasonMove, "al", "al", t0),
		// An unknown reason is counted as "other".
		convEvent("c6", queues.Reason("made_up"), "al", "", t0),
		// A new, unowned conversation has no prev and no owner change.
		{Kind: queues.EventConversation, Reason: queues.ReasonCreated, Conv: &queues.Conversation{ID: "c7"}},
		{Kind: queues.EventSettings, Settings: &queues.Settings{}},
	}
	p.Publish("ws1", batch)

	if len(next.batches) != 1 || &next.batches[0][0] != &batch[0] || len(next.batches[0]) != len(batch) {
		t.Fatalf("forwarded: got %d batches, want the same batch once", len(next.batches))
	}
	want := map[string]float64{
		"logout": 2, "manual_assign": 2, "other": 1,
		"manual_unassign": 0, "inbound": 0, "boomerang": 0, "resolved": 0, "admin_release": 0, "auto_ownership": 0,
	}
	for reason, w := range want {
		if got := value(t, reg, "presencehub_ownership_changes_total", "reason="+reason); got != w {
			t.Errorf("ownership_changes_total{reason=%s}: got %v, want %v", reason, got, w)
		}
	}
	if got := value(t, reg, "presencehub_presence_transitions_total", "to=offline", "reason=grace_expired"); got != 1 {
		t.Errorf("presence_transitions_total{to=offline,reason=grace_expired}: got %v, want 1", got)
	}
	h := histogram(t, reg, "presencehub_ownership_removal_delay_seconds")
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 180 {
		t.Errorf("removal delay: got count %d sum %v, want 2 and 180", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, b := range h.GetBucket() {
		wantCum := uint64(0)
		if b.GetUpperBound() >= 90 {
			wantCum = 2
		}
		if b.GetCumulativeCount() != wantCum {
			t.Errorf("removal delay bucket le=%v: got %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), wantCum)
		}
	}
}

func TestRemovalDelay(t *testing.T) {
	tests := []struct {
		name    string
		batches [][]queues.Event
		ws2     []queues.Event // published for another workspace after batches
		want    []float64      // observed delays in seconds
	}{
		{
			name: "explicit logout, same batch",
			batches: [][]queues.Event{{
				offline("bea", "logout", t0, t0),
				convEvent("c1", queues.ReasonLogout, "bea", "", t0.Add(20*time.Millisecond)),
			}},
			want: []float64{0.02},
		},
		{
			name: "reconciliation sweep in a later batch",
			batches: [][]queues.Event{
				{offline("bea", "grace_expired", t0, t0.Add(60*time.Second))},
				{convEvent("c1", queues.ReasonLogout, "bea", "", t0.Add(125*time.Second))},
			},
			want: []float64{125},
		},
		{
			name: "agent came back before a late sweep",
			batches: [][]queues.Event{
				{offline("bea", "grace_expired", t0, t0.Add(60*time.Second))},
				{online("bea", t0.Add(70*time.Second))},
				{convEvent("c1", queues.ReasonLogout, "bea", "", t0.Add(80*time.Second))},
			},
		},
		{
			name: "same agent id in another workspace",
			batches: [][]queues.Event{
				{offline("bea", "logout", t0, t0)},
			},
			ws2: []queues.Event{convEvent("c1", queues.ReasonLogout, "bea", "", t0.Add(time.Second))},
		},
		{
			name: "no offline transition seen",
			batches: [][]queues.Event{
				{convEvent("c1", queues.ReasonLogout, "bea", "", t0)},
			},
		},
		{
			name: "latest offline counts",
			batches: [][]queues.Event{{
				offline("bea", "logout", t0, t0),
				online("bea", t0.Add(time.Minute)),
				offline("bea", "grace_expired", t0.Add(2*time.Minute), t0.Add(3*time.Minute)),
				convEvent("c1", queues.ReasonLogout, "bea", "", t0.Add(3*time.Minute)),
			}},
			want: []float64{60},
		},
		{
			name: "clock stepped back",
			batches: [][]queues.Event{{
				offline("bea", "logout", t0, t0),
				convEvent("c1", queues.ReasonLogout, "bea", "", t0.Add(-time.Second)),
			}},
			want: []float64{0},
		},
		{
			name: "removal for another reason is not a logout delay",
			batches: [][]queues.Event{{
				offline("bea", "logout", t0, t0),
				convEvent("c1", queues.ReasonInbound, "bea", "", t0.Add(time.Second)),
				convEvent("c2", queues.ReasonAdminRelease, "bea", "", t0.Add(time.Second)),
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, reg := newTest(t, nil)
			p := m.Publisher(nil)
			for _, b := range tt.batches {
				p.Publish("ws1", b)
			}
			if tt.ws2 != nil {
				p.Publish("ws2", tt.ws2)
			}
			h := histogram(t, reg, "presencehub_ownership_removal_delay_seconds")
			var sum float64
			for _, d := range tt.want {
				sum += d
			}
			if h.GetSampleCount() != uint64(len(tt.want)) || fmt.Sprintf("%.6f", h.GetSampleSum()) != fmt.Sprintf("%.6f", sum) {
				t.Errorf("got count %d sum %v, want %d and %v", h.GetSampleCount(), h.GetSampleSum(), len(tt.want), sum)
			}
		})
	}
}

func TestRememberedIsBounded(t *testing.T) {
	m, _ := newTest(t, nil)
	p := m.Publisher(nil)
	// Old absences fill the map; a new one past the bound prunes them.
	for i := range maxRemembered {
		p.Publish("ws1", []queues.Event{offline(fmt.Sprintf("a%d", i), "logout", t0, t0)})
	}
	later := t0.Add(2 * rememberFor)
	p.Publish("ws1", []queues.Event{offline("late", "logout", later, later)})
	m.mu.Lock()
	n := len(m.offlineSince)
	m.mu.Unlock()
	if n != 1 {
		t.Errorf("remembered after pruning: got %d, want 1", n)
	}
}

func TestPresenceUnknownLabels(t *testing.T) {
	m, reg := newTest(t, nil)
	m.Publisher(nil).Publish("ws1", []queues.Event{{
		Kind:     queues.EventPresence,
		Presence: &queues.PresenceChange{Agent: "bea", From: "online", To: "sleeping", Reason: "because"},
	}})
	if got := value(t, reg, "presencehub_presence_transitions_total", "to=other", "reason=other"); got != 1 {
		t.Errorf("presence_transitions_total{to=other,reason=other}: got %v, want 1", got)
	}
}

func TestStateGauges(t *testing.T) {
	src := fakeSource{stats: queues.Stats{
		Agents: map[queues.Status]int{queues.StatusOnline: 3, queues.StatusOffline: 7},
		Conversations: map[queues.Queue]queues.QueueStats{
			queues.QueueNew:     {Owned: 4, Unowned: 2},
			queues.QueuePending: {Owned: 5},
		},
	}}
	_, reg := newTest(t, src)
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"presencehub_agents", []string{"status=online"}, 3},
		{"presencehub_agents", []string{"status=away"}, 0},
		{"presencehub_agents", []string{"status=offline"}, 7},
		{"presencehub_conversations", []string{"queue=new", "owned=true"}, 4},
		{"presencehub_conversations", []string{"queue=new", "owned=false"}, 2},
		{"presencehub_conversations", []string{"queue=pending", "owned=true"}, 5},
		{"presencehub_conversations", []string{"queue=pending", "owned=false"}, 0},
		{"presencehub_conversations", []string{"queue=resolved", "owned=true"}, 0},
		{"presencehub_conversations", []string{"queue=resolved", "owned=false"}, 0},
	}
	for _, c := range checks {
		if got := value(t, reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v: got %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestNilSourceOmitsStateGauges(t *testing.T) {
	_, reg := newTest(t, nil)
	n, err := testutil.GatherAndCount(reg, "presencehub_agents", "presencehub_conversations")
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("state series without a source: got %d, want 0", n)
	}
}

func TestLint(t *testing.T) {
	m, reg := newTest(t, fakeSource{})
	// Touch everything so every family has samples.
	m.ConnOpened()
	m.Sent(1)
	m.BroadcastDuration(time.Millisecond)
	m.Publisher(nil).Publish("ws1", []queues.Event{
		offline("bea", "logout", t0, t0),
		convEvent("c1", queues.ReasonLogout, "bea", "", t0.Add(time.Second)),
	})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestHandler(t *testing.T) {
	m, _ := newTest(t, fakeSource{})
	m.ConnOpened()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d, want 200", res.StatusCode)
	}
	for _, want := range []string{
		"presencehub_connections 1",
		`presencehub_agents{status="online"} 0`,
		`presencehub_ownership_changes_total{reason="logout"} 0`,
		"presencehub_ownership_removal_delay_seconds_bucket",
		// The bounds the load tool counts slow commits over (hub_commits,
		// cmd/hubload): it reads them by these exact series names.
		`presencehub_store_commit_duration_seconds_bucket{le="0.01"} 0`,
		`presencehub_store_commit_duration_seconds_bucket{le="0.025"} 0`,
		`presencehub_store_commit_duration_seconds_bucket{le="0.05"} 0`,
		`presencehub_store_commit_duration_seconds_bucket{le="0.1"} 0`,
		"presencehub_store_commit_duration_seconds_count 0",
		"go_goroutines",
		"process_start_time_seconds",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

// The hub and the store call in from many goroutines at once.
func TestConcurrentUse(t *testing.T) {
	m, reg := newTest(t, fakeSource{})
	p := m.Publisher(&recorder{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			agent := fmt.Sprintf("a%d", i)
			for j := range 200 {
				m.ConnOpened()
				m.Sent(2)
				m.Rejected("too_big")
				p.Publish("ws1", []queues.Event{
					offline(agent, "logout", t0, t0),
					convEvent(fmt.Sprintf("c%d", j), queues.ReasonLogout, agent, "", t0.Add(time.Second)),
					online(agent, t0),
				})
				m.ConnClosed()
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if _, err := reg.Gather(); err != nil {
				t.Errorf("gather: %v", err)
				return
			}
		}
	})
	wg.Wait()
	if got := value(t, reg, "presencehub_connections"); got != 0 {
		t.Errorf("connections: got %v, want 0", got)
	}
	if got := histogram(t, reg, "presencehub_ownership_removal_delay_seconds").GetSampleCount(); got != 8*200 {
		t.Errorf("removal delays: got %d, want %d", got, 8*200)
	}
}
