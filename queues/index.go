package queues

import (
	"encoding/base64"
	"encoding/binary"
	"slices"
	"sort"
)

// Queue indexes. Every queue of every workspace keeps its conversations
// sorted by (LastActivity desc, ID) three ways: all of them, the owned ones,
// and one set per owner ("" = unowned). A page is then a seek plus a walk of
// at most Limit+1 entries, and every count of Counts is the size of a set,
// so nothing is ever scanned.
//
// The sets are chunked sorted slices rather than a balanced tree: start-up
// sorts each queue once and cuts it into chunks in O(n) (1,000,000
// conversations must load in well under 3 s, and inserting them one by one
// into a tree costs several times more), and a chunk of at most 2*chunkSize
// entries keeps an insert or delete to one binary search over the chunks, one
// inside a chunk and a short copy.

// ientry is one conversation's position in an index.
type ientry struct {
	at int64 // LastActivity, UnixNano
	id string
}

// before is the index order: newest activity first, then id.
func (a ientry) before(b ientry) bool {
	if a.at != b.at {
		return a.at > b.at
	}
	return a.id < b.id
}

const chunkSize = 512

// sortedSet is a set of ientry kept in index order.
type sortedSet struct {
	chunks [][]ientry
	n      int
}

// newSortedSet builds a set from entries already in index order.
func newSortedSet(sorted []ientry) *sortedSet {
	s := &sortedSet{n: len(sorted)}
	for len(sorted) > 0 {
		k := min(chunkSize, len(sorted))
		s.chunks = append(s.chunks, slices.Clone(sorted[:k]))
		sorted = sorted[k:]
	}
	return s
}

func (s *sortedSet) len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// chunkFor is the index of the chunk e belongs in: the last chunk whose first
// entry is not after e.
func (s *sortedSet) chunkFor(e ientry) int {
	i := sort.Search(len(s.chunks), func(i int) bool { return e.before(s.chunks[i][0]) })
	return max(i-1, 0)
}

func (s *sortedSet) insert(e ientry) {
	if len(s.chunks) == 0 {
		s.chunks = [][]ientry{{e}}
		s.n = 1
		return
	}
	ci := s.chunkFor(e)
	c := s.chunks[ci]
	j := sort.Search(len(c), func(j int) bool { return !c[j].before(e) })
	if j < len(c) && c[j] == e {
		return
	}
	c = slices.Insert(c, j, e)
	s.n++
	if len(c) > 2*chunkSize {
		// Split in halves; the second half gets its own backing array so
		// appending to the first cannot overwrite it.
		half := slices.Clone(c[chunkSize:])
		c = c[:chunkSize:chunkSize]
		s.chunks = slices.Insert(s.chunks, ci+1, half)
	}
	s.chunks[ci] = c
}

func (s *sortedSet) delete(e ientry) {
	if len(s.chunks) == 0 {
		return
	}
	ci := s.chunkFor(e)
	c := s.chunks[ci]
	j := sort.Search(len(c), func(j int) bool { return !c[j].before(e) })
	if j >= len(c) || c[j] != e {
		return
	}
	c = slices.Delete(c, j, j+1)
	s.n--
	if len(c) == 0 {
		s.chunks = slices.Delete(s.chunks, ci, ci+1)
		return
	}
	s.chunks[ci] = c
}

// walk calls fn for the entries after `after` (from the start when after is
// nil), in order, until fn returns false.
func (s *sortedSet) walk(after *ientry, fn func(ientry) bool) {
	if s == nil || len(s.chunks) == 0 {
		return
	}
	ci, j := 0, 0
	if after != nil {
		ci = s.chunkFor(*after)
		c := s.chunks[ci]
		j = sort.Search(len(c), func(j int) bool { return after.before(c[j]) })
	}
	for ; ci < len(s.chunks); ci++ {
		c := s.chunks[ci]
		for ; j < len(c); j++ {
			if !fn(c[j]) {
				return
			}
		}
		j = 0
	}
}

// queueIndex is one queue of one workspace.
type queueIndex struct {
	all     *sortedSet
	owned   *sortedSet
	byOwner map[string]*sortedSet // "" = unowned; empty sets are removed
}

func newQueueIndex() *queueIndex {
	return &queueIndex{all: &sortedSet{}, owned: &sortedSet{}, byOwner: map[string]*sortedSet{}}
}

func entryOf(c *convRec) ientry { return ientry{at: c.LastActivity.UnixNano(), id: c.ID} }

func (q *queueIndex) add(c *convRec) {
	e := entryOf(c)
	q.all.insert(e)
	if c.Owner != "" {
		q.owned.insert(e)
	}
	s := q.byOwner[c.Owner]
	if s == nil {
		s = &sortedSet{}
		q.byOwner[c.Owner] = s
	}
	s.insert(e)
}

func (q *queueIndex) remove(c *convRec) {
	e := entryOf(c)
	q.all.delete(e)
	if c.Owner != "" {
		q.owned.delete(e)
	}
	if s := q.byOwner[c.Owner]; s != nil {
		s.delete(e)
		if s.n == 0 {
			delete(q.byOwner, c.Owner)
		}
	}
}

// buildQueueIndex builds an index from unsorted conversations (start-up):
// one sort, then every set is cut from the sorted run in O(n).
func buildQueueIndex(convs []*convRec) *queueIndex {
	type owned struct {
		e     ientry
		owner string
	}
	all := make([]owned, len(convs))
	for i, c := range convs {
		all[i] = owned{entryOf(c), c.Owner}
	}
	slices.SortFunc(all, func(a, b owned) int {
		if a.e.before(b.e) {
			return -1
		}
		if b.e.before(a.e) {
			return 1
		}
		return 0
	})
	sorted := make([]ientry, len(all))
	var ownedSet []ientry
	per := map[string][]ientry{}
	for i, o := range all {
		sorted[i] = o.e
		if o.owner != "" {
			ownedSet = append(ownedSet, o.e)
		}
		per[o.owner] = append(per[o.owner], o.e)
	}
	q := &queueIndex{all: newSortedSet(sorted), owned: newSortedSet(ownedSet), byOwner: make(map[string]*sortedSet, len(per))}
	for o, es := range per {
		q.byOwner[o] = newSortedSet(es)
	}
	return q
}

// counts of the queue as seen by agent me, and how many match f.
func (q *queueIndex) counts(f Filter) Counts {
	c := Counts{
		Total:   q.all.len(),
		Unowned: q.byOwner[""].len(),
	}
	if f.Me != "" {
		c.Mine = q.byOwner[f.Me].len()
	}
	c.Others = q.owned.len() - c.Mine
	switch f.Kind {
	case FilterUnowned:
		c.Matching = c.Unowned
	case FilterMine:
		c.Matching = c.Mine
	case FilterOthers:
		c.Matching = c.Others
	case FilterAgents:
		for _, a := range uniqueAgents(f.Agents) {
			c.Matching += q.byOwner[a].len()
		}
	default:
		c.Matching = c.Total
	}
	return c
}

// uniqueAgents drops duplicates and "" (which would otherwise select the
// unowned set under a filter that asks for owners).
func uniqueAgents(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// page returns up to limit entries matching f after the cursor position,
// and whether more follow. ownerOf resolves an id's owner for the one filter
// that needs it (others skips the asking agent's own entries while walking
// the owned set: the walk is bounded by how many of them sit in the way).
func (q *queueIndex) page(f Filter, after *ientry, limit int, ownerOf func(id string) string) ([]ientry, bool) {
	out := make([]ientry, 0, min(limit+1, 64))
	collect := func(e ientry) bool {
		out = append(out, e)
		return len(out) <= limit
	}
	switch f.Kind {
	case FilterUnowned:
		q.byOwner[""].walk(after, collect)
	case FilterMine:
		q.byOwner[f.Me].walk(after, collect)
	case FilterOthers:
		q.owned.walk(after, func(e ientry) bool {
			if ownerOf(e.id) == f.Me {
				return true
			}
			return collect(e)
		})
	case FilterAgents:
		// Merge the first limit+1 of each chosen owner's set.
		for _, a := range uniqueAgents(f.Agents) {
			n := 0
			q.byOwner[a].walk(after, func(e ientry) bool {
				out = append(out, e)
				n++
				return n <= limit
			})
		}
		slices.SortFunc(out, func(a, b ientry) int {
			if a.before(b) {
				return -1
			}
			return 1
		})
	default:
		q.all.walk(after, collect)
	}
	if len(out) > limit {
		return out[:limit], true
	}
	return out, false
}

// Cursors are opaque to clients: base64url of the last entry's activity time
// and id.
func encodeCursor(e ientry) string {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(e.id)), uint64(e.at))
	return base64.RawURLEncoding.EncodeToString(append(b, e.id...))
}

func decodeCursor(s string) (ientry, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 9 {
		return ientry{}, invalid("cursor", "not a cursor this store issued")
	}
	return ientry{at: int64(binary.BigEndian.Uint64(b[:8])), id: string(b[8:])}, nil
}
