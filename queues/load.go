package queues

import (
	"bytes"
	"container/heap"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// load reads every workspace, agent, conversation, unread notification and
// timer into memory. History, messages, the admin log and the event log stay
// on disk: nothing reads them at start-up. Conversations are decoded into
// slabs (one allocation per slabSize records) and each queue's index is
// built with one sort; the queues of a workspace are indexed in parallel.
func (s *Store) load() error {
	err := s.db.View(func(txn *badger.Txn) error {
		if err := loadPrefix(txn, []byte{kindWorkspace, '/'}, func(k, v []byte) error {
			rec, err := decodeWorkspace(v)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			if rec.Settings.AutoOwnership == nil {
				rec.Settings.AutoOwnership = map[string]bool{}
			}
			s.wss[string(k[2:])] = newWorkspace(string(k[2:]), rec)
			return nil
		}); err != nil {
			return err
		}
		if err := loadPrefix(txn, []byte{kindAgent, '/'}, func(k, v []byte) error {
			a, err := decodeAgent(v)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			w := s.wss[wsOf(k)]
			if w == nil {
				return fmt.Errorf("%s: agent of an unknown workspace: %w", k, errCorrupt)
			}
			w.agents[a.ID] = &a
			return nil
		}); err != nil {
			return err
		}
		for _, w := range s.wss {
			w.buildRoster()
		}
		if err := s.loadConvs(txn); err != nil {
			return err
		}
		if err := loadPrefix(txn, []byte{kindNotification, '/'}, func(k, v []byte) error {
			n, err := decodeNotification(v)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			if w := s.wss[wsOf(k)]; w != nil {
				w.unread[n.Agent] = append(w.unread[n.Agent], n)
			}
			return nil
		}); err != nil {
			return err
		}
		return loadKeys(txn, []byte{kindTimer, '/'}, func(k []byte) error {
			deadline, ws, kind, id, ok := parseTimerKey(k)
			if !ok {
				return fmt.Errorf("timer key %q: %w", k, errCorrupt)
			}
			switch kind {
			case timerBoomerang:
				s.timers = append(s.timers, timerEntry{due: deadline, deadline: deadline, ws: ws, kind: kind, id: id})
			case timerGrace:
				s.timers = append(s.timers, s.graceEntry(ws, id, deadline))
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("load store: %w", err)
	}
	heap.Init(&s.timers)
	return nil
}

// trimEventLogs deletes events older than the last EventLogSize of each
// workspace. The committer trims one event per event it adds, so this finds
// something only after EventLogSize was lowered between runs.
func (s *Store) trimEventLogs() error {
	var stale []op
	err := s.db.View(func(txn *badger.Txn) error {
		for name, w := range s.wss {
			oldest := s.oldestKept(w.rec.Head)
			if err := loadKeys(txn, prefix(kindEvent, name), func(k []byte) error {
				if seqOf(k) >= oldest {
					return errStopScan
				}
				stale = append(stale, op{k: bytes.Clone(k), del: true})
				return nil
			}); err != nil && err != errStopScan {
				return err
			}
		}
		return nil
	})
	if err != nil || len(stale) == 0 {
		return err
	}
	s.log.Info("trimming the event log to the configured size", "events", len(stale))
	return s.write(stale)
}

var errStopScan = errors.New("stop scan")

const slabSize = 4096

func (s *Store) loadConvs(txn *badger.Txn) error {
	type pending struct {
		n       int
		byQueue [3][]*convRec
	}
	per := map[*workspace]*pending{}
	var (
		slab   []convRec
		lastWS []byte
		w      *workspace
		p      *pending
	)
	err := loadPrefix(txn, []byte{kindConversation, '/'}, func(k, v []byte) error {
		if len(slab) == cap(slab) {
			slab = make([]convRec, 0, slabSize)
		}
		slab = slab[:len(slab)+1]
		c := &slab[len(slab)-1]
		if err := decodeConv(v, c); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		if name := k[2 : len(k)-len(c.ID)-1]; w == nil || !bytes.Equal(name, lastWS) {
			w = s.wss[string(name)]
			if w == nil {
				return fmt.Errorf("%s: conversation of an unknown workspace: %w", k, errCorrupt)
			}
			lastWS = append(lastWS[:0], name...)
			if p = per[w]; p == nil {
				p = &pending{}
				per[w] = p
			}
		}
		i := queueIdx(c.Queue)
		p.byQueue[i] = append(p.byQueue[i], c)
		p.n++
		return nil
	})
	if err != nil {
		return err
	}
	// Filling each workspace's map (sized once, no rehashing) and sorting
	// each queue's index are independent: spread them over the cores.
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	spawn := func(fn func()) {
		wg.Add(1)
		sem <- struct{}{}
		// Ends when fn is done; loadConvs waits for all of them.
		go func() {
			defer wg.Done()
			fn()
			<-sem
		}()
	}
	for w, p := range per {
		spawn(func() {
			convs := make(map[string]*convRec, p.n)
			for _, q := range p.byQueue {
				for _, c := range q {
					convs[c.ID] = c
				}
			}
			w.convs = convs
		})
		for i := range p.byQueue {
			spawn(func() { w.queues[i] = buildQueueIndex(p.byQueue[i]) })
		}
	}
	wg.Wait()
	return nil
}

// loadPrefix calls fn for every key and value under p. Values are read in
// place, not prefetched: prefetching copies every value once more, and the
// decoders copy what they keep anyway.
func loadPrefix(txn *badger.Txn, p []byte, fn func(k, v []byte) error) error {
	o := badger.DefaultIteratorOptions
	o.Prefix = p
	o.PrefetchValues = false
	it := txn.NewIterator(o)
	defer it.Close()
	for it.Seek(p); it.ValidForPrefix(p); it.Next() {
		item := it.Item()
		k := item.Key()
		if err := item.Value(func(v []byte) error { return fn(k, v) }); err != nil {
			return err
		}
	}
	return nil
}

// loadKeys calls fn for every key under p, without reading values.
func loadKeys(txn *badger.Txn, p []byte, fn func(k []byte) error) error {
	o := badger.DefaultIteratorOptions
	o.Prefix = p
	o.PrefetchValues = false
	it := txn.NewIterator(o)
	defer it.Close()
	for it.Seek(p); it.ValidForPrefix(p); it.Next() {
		if err := fn(it.Item().Key()); err != nil {
			return err
		}
	}
	return nil
}
