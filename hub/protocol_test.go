package hub

import (
	"errors"
	"fmt"
	"testing"

	"github.com/presencehub/presencehub/queues"
)

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		frame string
		id    string // the id a reply would echo
		code  string // "" for a good request
	}{
		{`{"id":7,"op":"settings"}`, `7`, ""},
		{`{"id":"a-1","op":"settings"}`, `"a-1"`, ""},
		{` {"id":-1.5,"op":"x"} `, `-1.5`, ""},
		{`not json`, `null`, codeBadRequest},
		{`{"id":1,"op":`, `null`, codeBadRequest},
		{`[1,2]`, `null`, codeBadRequest},
		{`"hello"`, `null`, codeBadRequest},
		{`{"op":"settings"}`, `null`, codeBadRequest},
		{`{"id":null,"op":"settings"}`, `null`, codeBadRequest},
		{`{"id":{"a":1},"op":"settings"}`, `null`, codeBadRequest},
		{`{"id":true,"op":"settings"}`, `null`, codeBadRequest},
		{`{"id":3}`, `3`, codeBadRequest},
		{`{"id":3,"op":5}`, `3`, codeBadRequest},
		{`{"id":3,"op":"assign","version":"six"}`, `3`, codeBadRequest},
		{`{"id":3,"op":"subscribe","filter":"mine"}`, `3`, codeBadRequest},
	}
	for _, tt := range tests {
		req, id, rerr := decodeRequest([]byte(tt.frame))
		if string(id) != tt.id {
			t.Errorf("%s: reply id: got %s, want %s", tt.frame, id, tt.id)
		}
		switch {
		case tt.code == "" && rerr != nil:
			t.Errorf("%s: got error %v, want a request", tt.frame, rerr)
		case tt.code == "" && req == nil:
			t.Errorf("%s: got no request", tt.frame)
		case tt.code != "" && (rerr == nil || rerr.Code != tt.code):
			t.Errorf("%s: got %v, want %s", tt.frame, rerr, tt.code)
		}
	}
}

func TestErrorFor(t *testing.T) {
	tests := []struct {
		err    error
		code   string
		field  string
		client bool
	}{
		{fmt.Errorf("conversation c9: %w", queues.ErrNotFound), codeNotFound, "", true},
		{&queues.StaleError{Conversation: "c7", Want: 4, Have: 5}, codeConflict, "", true},
		{fmt.Errorf("boomerang: %w", queues.ErrConflict), codeConflict, "", true},
		{fmt.Errorf("x: %w", queues.ErrForbidden), codeForbidden, "", true},
		{fmt.Errorf("wrapped: %w", &queues.InvalidError{Field: "text", Reason: "too long"}), codeInvalid, "text", true},
		{fmt.Errorf("commit: %w", queues.ErrUnavailable), codeUnavailable, "", false},
		{invalidField("view", "required"), codeInvalid, "view", true},
		{errors.New("boom"), codeInternal, "", false},
	}
	for _, tt := range tests {
		re, client := errorFor(tt.err)
		if re.Code != tt.code || re.Field != tt.field || client != tt.client {
			t.Errorf("%v: got %s field %q client %v, want %s field %q client %v",
				tt.err, re.Code, re.Field, client, tt.code, tt.field, tt.client)
		}
	}
}
