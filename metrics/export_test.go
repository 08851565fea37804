package metrics

// Label lists, for the drift checks in labels_test.go.
var (
	RejectReasons   = rejectReasons
	PresenceReasons = presenceReasons
)
