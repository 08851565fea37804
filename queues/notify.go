package queues

import (
	"encoding/json"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Events leave the store two ways: pushed to the Publisher right after the
// commit that made them (commit.go, publish), and pulled by a client that
// reconnects and resumes from the last Seq it saw (EventsSince, from the
// event log e/<ws>/<seq>, which keeps the last EventLogSize events of each
// workspace). Notifications (rules.go, groupNotifications) are read from
// memory; the store keeps an agent's unread ones until MarkNotificationsRead.

// maxEventsSince bounds one EventsSince answer when max <= 0.
const maxEventsSince = 1000

// EventsSince returns the workspace's events with Seq > since, in order,
// with Wire and the decoded struct both filled. complete is false when the
// log no longer holds since+1 (nothing is returned: the client must take a
// fresh snapshot) or when more than max events would follow (the first max
// are returned).
func (s *Store) EventsSince(ws string, since uint64, max int) ([]Event, bool, error) {
	w, err := s.workspace(ws)
	if err != nil {
		return nil, false, err
	}
	if max <= 0 {
		max = maxEventsSince
	}
	w.mu.RLock()
	head := w.rec.Head
	w.mu.RUnlock()
	if since >= head {
		return []Event{}, true, nil
	}
	if since+1 < s.oldestKept(head) {
		return []Event{}, false, nil
	}
	n, complete := head-since, true
	if n > uint64(max) {
		n, complete = uint64(max), false
	}
	out := make([]Event, 0, n)
	err = s.view(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = prefix(kindEvent, ws)
		o.PrefetchSize = int(min(n, 100))
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Seek(eventKey(ws, since+1)); it.ValidForPrefix(o.Prefix) && uint64(len(out)) < n; it.Next() {
			wire, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			ev, err := decodeWire(ws, wire)
			if err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("%w: event log: %v", ErrUnavailable, err)
	}
	// The log may have been trimmed past since+1 between reading head and
	// reading the log: then the client cannot resume either.
	if len(out) == 0 || out[0].Seq != since+1 {
		return []Event{}, false, nil
	}
	return out, complete, nil
}

// oldestKept is the first sequence number the event log still holds.
func (s *Store) oldestKept(head uint64) uint64 {
	if size := uint64(s.opts.EventLogSize); head > size {
		return head - size + 1
	}
	return 1
}

// decodeWire turns a logged event back into its struct, keeping the bytes.
func decodeWire(ws string, wire []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(wire, &wireEvent{Event: &ev}); err != nil {
		return Event{}, fmt.Errorf("event log: %w", err)
	}
	ev.Workspace = ws
	ev.Wire = wire
	return ev, nil
}
