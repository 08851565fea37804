package metrics

import "github.com/presencehub/presencehub/queues"

// other is the label value for anything not on a list: a reason added by a
// newer store or hub than this package knows, or a malformed one. It keeps
// label cardinality fixed whatever arrives.
const other = "other"

// rejectReasons are the hub's Reject* constants. They are copied, not
// imported: hub may import metrics, so metrics must not import hub. A
// reason added to hub without being added here is counted as "other".
var rejectReasons = []string{
	"no_token",
	"bad_token",
	"expired",
	"origin",
	"role",
	"rate_limited",
	"too_big",
	"shutdown",
}

// presenceReasons are the presence package's typed transition reasons.
var presenceReasons = []string{
	"connected",
	"grace_expired",
	"manual_away",
	"available",
	"idle",
	"activity",
	"logout",
	"idle_logout",
	"forced",
	"restored",
}

// statuses are the values of the "to" label of presence transitions and of
// the "status" label of presencehub_agents.
var statuses = []string{
	string(queues.StatusOnline),
	string(queues.StatusAway),
	string(queues.StatusOffline),
}

// ownershipReasons are queues.OwnershipReasons as strings.
func ownershipReasons() []string {
	out := make([]string, len(queues.OwnershipReasons))
	for i, r := range queues.OwnershipReasons {
		out[i] = string(r)
	}
	return out
}

// withOther returns list with "other" appended, for pre-declaring.
func withOther(list []string) []string {
	return append(append([]string(nil), list...), other)
}

// known maps a value to itself when it is on the list and to "other"
// otherwise.
type known map[string]bool

func newKnown(list []string) known {
	k := make(known, len(list))
	for _, v := range list {
		k[v] = true
	}
	return k
}

func (k known) label(v string) string {
	if k[v] {
		return v
	}
	return other
}
