package main

import (
	"bytes"
	"testing"
)

func TestParseTerminator(t *testing.T) {
	cases := []struct {
		in    string
		term  []byte
		fixed bool
		err   bool
	}{
		{`\n`, []byte("\n"), false, false},
		{`\r\n`, []byte("\r\n"), false, false},
		{"\n", []byte("\n"), false, false},
		{`\x00`, []byte{0}, false, false},
		{"hex:0d0a", []byte("\r\n"), false, false},
		{"hex:zz", nil, false, true},
		{"none", nil, true, false},
		{"", nil, true, false},
		{`;`, []byte(";"), false, false},
		{`"`, []byte(`"`), false, false},
	}
	for _, tc := range cases {
		term, fixed, err := parseTerminator(tc.in)
		if (err != nil) != tc.err || fixed != tc.fixed || !bytes.Equal(term, tc.term) {
			t.Errorf("parseTerminator(%q) = %q, %v, %v", tc.in, term, fixed, err)
		}
	}
}

func TestParseSlaves(t *testing.T) {
	if s, err := parseSlaves("1, 2,247"); err != nil || len(s) != 3 || s[2] != 247 {
		t.Fatalf("%v %v", s, err)
	}
	for _, bad := range []string{"0", "248", "x", "1,,2"} {
		if _, err := parseSlaves(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRunFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-terminator", "hex:0"},
		{"-heartbeat-hex", "xyz"},
		{"-slaves", "300"},
		{"-map", "/nonexistent/map.toml"},
		{"-log-level", "loud"},
		{"extra"},
	} {
		if err := run(args); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
