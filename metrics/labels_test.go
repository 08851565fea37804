package metrics_test

import (
	"slices"
	"testing"

	"github.com/presencehub/presencehub/hub"
	"github.com/presencehub/presencehub/metrics"
	"github.com/presencehub/presencehub/presence"
)

// metrics copies the hub's reject reasons and the presence package's
// transition reasons instead of importing them (hub may import metrics).
// These checks catch a renamed or new value that would otherwise be counted
// as "other" without anyone noticing.
func TestLabelListsMatchTheirSources(t *testing.T) {
	for _, r := range []string{
		hub.RejectNoToken, hub.RejectBadToken, hub.RejectExpired, hub.RejectOrigin,
		hub.RejectRole, hub.RejectRateLimited, hub.RejectTooBig, hub.RejectShutdown,
	} {
		if !slices.Contains(metrics.RejectReasons, r) {
			t.Errorf("hub reject reason %q is not a label value of presencehub_ws_rejected_total", r)
		}
	}
	// last_disconnect and reconnected never change the status, so they are
	// never a transition's reason.
	for _, r := range []presence.Reason{
		presence.ReasonConnected, presence.ReasonGraceExpired, presence.ReasonManualAway,
		presence.ReasonAvailable, presence.ReasonIdle, presence.ReasonActivity, presence.ReasonLogout,
		presence.ReasonIdleLogout, presence.ReasonForced, presence.ReasonRestored,
	} {
		if !slices.Contains(metrics.PresenceReasons, string(r)) {
			t.Errorf("presence reason %q is not a label value of presencehub_presence_transitions_total", r)
		}
	}
}
