package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/voltedge/voltedge/internal/contract"
)

// FuzzParseControlValue: whatever the body holds, an accepted value is a
// decimal number of at most 64 bytes that send_control accepts, and a JSON
// number is kept as its exact text.
func FuzzParseControlValue(f *testing.F) {
	for _, s := range []string{`50`, `"50"`, `-0.5e3`, `true`, `null`, `"abc"`, `[1]`, `1.`, `"\u0035"`, ` 7 `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		v, err := ParseControlValue(json.RawMessage(raw))
		if err != nil {
			return
		}
		if !contract.ValidValue(v) {
			t.Fatalf("%q accepted as %q", raw, v)
		}
		trimmed := strings.TrimSpace(string(raw))
		if trimmed != "" && trimmed[0] != '"' && trimmed[0] != 't' && trimmed[0] != 'f' && trimmed != v {
			t.Fatalf("number %q changed to %q", raw, v)
		}
	})
}

// FuzzJSONOrRaw: a stored frame or entry is always returned as valid JSON.
func FuzzJSONOrRaw(f *testing.F) {
	for _, s := range []string{`{"ts":1,"dir":"rx","kind":"rtu","hex":"01"}`, `{`, `not json`, `{"a":"<script>"}`, "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := json.Marshal(jsonOrRaw(s))
		if err != nil || !json.Valid(b) {
			t.Fatalf("%q: %s %v", s, b, err)
		}
		if strings.ContainsAny(string(b), "<>&") {
			t.Fatalf("%q: HTML characters left unescaped: %s", s, b)
		}
		if _, ok := decodeObject(s); ok && strings.TrimLeft(s, " \t\r\n")[0] != '{' {
			t.Fatalf("decodeObject accepted %q", s)
		}
	})
}
