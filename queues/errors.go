package queues

import (
	"errors"
	"fmt"
)

// Sentinel errors. Store methods wrap them with %w; callers use errors.Is.
var (
	// ErrNotFound: no such workspace, agent or conversation.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change conflicts with the current state, for example
	// an ownership change made against a version that is no longer current.
	ErrConflict = errors.New("conflict")
	// ErrForbidden: the actor's role may not do this.
	ErrForbidden = errors.New("forbidden")
	// ErrInvalid: a value is out of range or malformed; see InvalidError.
	ErrInvalid = errors.New("invalid")
	// ErrUnavailable: the store is closed or its last write failed.
	ErrUnavailable = errors.New("store unavailable")
)

// StaleError is the conflict of an ownership change made against a version
// that is no longer current. It matches ErrConflict.
type StaleError struct {
	Conversation string
	Want, Have   uint64
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("conversation %s changed: version %d is current, the change was made against %d",
		e.Conversation, e.Have, e.Want)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *StaleError) Is(target error) bool { return target == ErrConflict }

// InvalidError names the field at fault and what it accepts. It matches
// ErrInvalid.
type InvalidError struct {
	Field  string
	Reason string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
