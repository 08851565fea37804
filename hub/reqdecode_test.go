package hub

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

// flatTaken are frames at the edges of what decodeFlat must take.
var flatTaken = []string{
	`{"id":7,"op":"assign","conv":"c1","agent":"a1","version":3}`,
	`{"id":"x-2","op":"unassign","conv":"c1","version":4}`,
	` { "id" : "r-1" , "op" : "subscribe" , "view" : "v" , "queue" : "new" , "limit" : 50 } `,
	"{\"id\":1,\r\n\t\"op\":\"ping\"}",
	`{"id":1,"op":"reply","conv":"c","text":"héllo ✓","message_id":"m"}`,
	`{"id":1,"op":"resume","since":0}`,
	`{"id":1,"op":"status","status":"away"}`,
	`{"id":1,"op":"boomerang","conv":"c","preset":"1h","version":2}`,
	`{"id":1,"op":"page","view":"v","cursor":"abc"}`,
	`{"id":1,"op":"notifications_read","up_to":18446744073709551615}`,
	`{"id":0,"op":"x","limit":9223372036854775807}`,
	`{"id":1,"op":"a","op":"b"}`,
	`{"id":1,"op":"subscribe","view":"v","queue":"new","filter":{"kind":"mine"},"limit":1}`,
	`{"id":1,"op":"subscribe","filter": { "kind" : "all" } ,"view":"v"}`,
	`{"id":1,"op":"subscribe","filter":{}}`,
	`{}`,
}

// flatLeft are frames decodeFlat must leave to encoding/json.
var flatLeft = []string{
	`{"id":1,"op":"x","text":"a\"b"}`,
	`{"id":1,"op":"x","text":"a\u0041"}`,
	"{\"id\":1,\"op\":\"x\",\"text\":\"a\xffb\"}",
	"{\"id\":1,\"op\":\"x\",\"text\":\"a\tb\"}",
	`{"id":1,"OP":"x"}`,
	`{"id":1,"op":"x","filter":{"kind":"agents","agents":["a1"]}}`,
	`{"id":1,"op":"x","filter":{"kind":"all"},"filter":{}}`,
	`{"id":1,"op":"x","filter":{"kind":"all"},"filter":{"kind":"mine"}}`,
	`{"id":1,"op":"x","filter":{"Kind":"mine"}}`,
	`{"id":1,"op":"x","filter":{"kind":"mine",}}`,
	`{"id":1,"op":"x","filter":{"kind":null}}`,
	`{"id":1,"op":"x","filter":{"kind":"m\u0069ne"}}`,
	`{"id":1,"op":"x","filter":null}`,
	`{"id":1,"op":"x","filter":"mine"}`,
	`{"id":1,"op":"x","filter":{"kind":"mine"`,
	`{"id":1,"op":"x","conv":null}`,
	`{"id":-1,"op":"x"}`,
	`{"id":1.5,"op":"x"}`,
	`{"id":1e3,"op":"x"}`,
	`{"id":01,"op":"x"}`,
	`{"id":1,"op":"x","version":18446744073709551616}`,
	`{"id":1,"op":"x","limit":9223372036854775808}`,
	`{"id":1,"op":"x","in":-5}`,
	`{"id":1,"op":"x"} x`,
	`{"id":1,"op":"x",}`,
	`{"id":1 "op":"x"}`,
	`{"id":1,"op":"x"`,
	`{"id":true,"op":"x"}`,
	`{"id":1,"op":"x","version":"3"}`,
	`[1]`,
	``,
}

// FuzzDecodeFlat: what decodeFlat accepts, encoding/json accepts too and
// reads as the same request.
func FuzzDecodeFlat(f *testing.F) {
	for _, s := range slices.Concat(flatTaken, flatLeft, requestSeeds, docRequests(f)) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var fast request
		if !decodeFlat(frame, &fast) {
			return
		}
		var slow request
		if err := json.Unmarshal(frame, &slow); err != nil {
			t.Fatalf("%q: the fast path took a frame encoding/json refuses: %v", frame, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fast path read %+v, encoding/json %+v", frame, fast, slow)
		}
	})
}

// TestDecodeFlatTakesTheCommonRequests: the requests clients send most go
// the fast way, and the rest go to encoding/json with the same outcome.
func TestDecodeFlatTakesTheCommonRequests(t *testing.T) {
	for _, s := range flatTaken {
		var req request
		if !decodeFlat([]byte(s), &req) {
			t.Errorf("%q: not taken by the fast path", s)
		}
	}
	for _, s := range flatLeft {
		var req request
		if decodeFlat([]byte(s), &req) {
			t.Errorf("%q: taken by the fast path, want encoding/json", s)
		}
	}
	// Through decodeRequest, the slow frames get encoding/json's answer.
	for _, tt := range []struct {
		frame, code string
		want        request
	}{
		{`{"id":1,"op":"x","text":"a\"b"}`, "", request{ID: json.RawMessage(`1`), Op: "x", Text: `a"b`}},
		{`{"id":1,"OP":"x"}`, "", request{ID: json.RawMessage(`1`), Op: "x"}},
		{`{"id":1,"op":"x","version":"3"}`, codeBadRequest, request{}},
		{`{"id":1,"op":"x"} x`, codeBadRequest, request{}},
	} {
		req, _, rerr := decodeRequest([]byte(tt.frame))
		switch {
		case tt.code != "" && (rerr == nil || rerr.Code != tt.code):
			t.Errorf("%s: got %+v, %v; want error %s", tt.frame, req, rerr, tt.code)
		case tt.code == "" && (rerr != nil || !reflect.DeepEqual(*req, tt.want)):
			t.Errorf("%s: got %+v, %v; want %+v", tt.frame, req, rerr, tt.want)
		}
	}
}

// BenchmarkDecodeRequest: the most common request, an ownership change.
func BenchmarkDecodeRequest(b *testing.B) {
	for _, bc := range []struct{ name, frame string }{
		{"assign", `{"id":1234,"op":"assign","conv":"c17","agent":"a3","version":42}`},
		{"subscribe", `{"id":1,"op":"subscribe","view":"mine","queue":"new","filter":{"kind":"mine"},"limit":50}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			frame := []byte(bc.frame)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, rerr := decodeRequest(frame); rerr != nil {
					b.Fatal(rerr)
				}
			}
		})
	}
}
