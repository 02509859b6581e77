package conf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

type testDTU struct {
	Listen  string   `toml:"listen"`
	Max     int      `toml:"max_connections"`
	Timeout Duration `toml:"timeout"`
}

type testTask struct {
	Name  string `toml:"name"`
	Count uint16 `toml:"count"`
}

type testDoc struct {
	RedisURL string             `toml:"redis_url"`
	Globs    []string           `toml:"globs"`
	DTU      testDTU            `toml:"dtu"`
	Tasks    []testTask         `toml:"task"`
	Limits   map[string]float64 `toml:"limits"`
	Ratio    float64            `toml:"ratio"`
	Flag     bool               `toml:"flag"`
	Ignored  string             `toml:"-"`
}

// single returns the only *Error in err.
func single(t *testing.T, err error) *Error {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error")
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *conf.Error", err, err)
	}
	if strings.Count(err.Error(), "\n") != 0 {
		t.Fatalf("expected one error, got:\n%v", err)
	}
	return e
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name      string
		doc       string
		line, col int
		key, msg  string
	}{
		{"unknown top-level", "redis_url = \"x\"\n  bogus = 1\n", 2, 3, "bogus", "unknown key"},
		{"unknown in table", "[dtu]\nlisten = \":1\"\nlistn = 2\n", 3, 1, "dtu.listn", "unknown key"},
		{"unknown with hint", "[dtu]\nListen = \":1\"\n", 2, 1, "dtu.Listen", `unknown key (did you mean "listen"?)`},
		{"unknown table", "[dtux]\na = 1\n", 1, 2, "dtux", "unknown key"},
		{"unknown in array element", "[[task]]\nname = \"a\"\n[[task]]\nname = \"b\"\n\n[[task]]\nname = \"c\"\n   cnt = 3\n", 8, 4, "task[2].cnt", "unknown key"},
		{"unknown dotted", "dtu.listen = \":1\"\ndtu.lisen = \":2\"\n", 2, 5, "dtu.lisen", "unknown key"},
		{"type error", "[dtu]\nlisten = 22334\n", 2, 10, "dtu.listen", "expected a string, found an integer"},
		{"type error in element", "[[task]]\ncount = 1\n[[task]]\ncount = \"x\"\n", 4, 9, "task[1].count", "expected an integer, found a string"},
		{"out of range", "[[task]]\ncount = 70000\n", 2, 9, "task[0].count", "70000 is out of range (0..65535)"},
		{"bad duration", "[dtu]\ntimeout = \"5 seconds\"\n", 2, 11, "dtu.timeout", `invalid duration "5 seconds"`},
		{"negative duration", "[dtu]\ntimeout = \"-5s\"\n", 2, 11, "dtu.timeout", `negative duration "-5s"`},
		{"duration as number", "[dtu]\ntimeout = 5\n", 2, 11, "dtu.timeout", "expected a string, found an integer"},
		{"map value type", "[limits]\n\"a:b\" = \"high\"\n", 2, 9, `limits."a:b"`, "expected a number, found a string"},
		{"array element type", "globs = [\"a\",\n  3]\n", 2, 3, "globs[1]", "expected a string, found an integer"},
		{"table expected", "dtu = 3\n", 1, 7, "dtu", "expected a table, found an integer"},
		{"syntax error", "[dtu]\nlisten = \":1\n", 2, 13, "dtu.listen", "strings cannot contain newlines"},
		{"duplicate key", "a = 1\na = 2\n", 2, 7, "a", "already been defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d testDoc
			_, err := DecodeData("x.toml", []byte(tc.doc), &d)
			e := single(t, err)
			if e.File != "x.toml" || e.Line != tc.line || e.Col != tc.col || e.Key != tc.key || !strings.Contains(e.Msg, tc.msg) {
				t.Fatalf("got %q (line %d col %d key %q), want %d:%d key %q containing %q", err, e.Line, e.Col, e.Key, tc.line, tc.col, tc.key, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "x.toml:") {
				t.Fatalf("error %q lacks the file", err)
			}
		})
	}
}

func TestDecodeSyntaxColumn(t *testing.T) {
	var d testDoc
	_, err := DecodeData("s.toml", []byte("redis_url = \"a\"\nflag = tru\n"), &d)
	e := single(t, err)
	if e.Line != 2 || e.Col < 8 {
		t.Fatalf("got %v", err)
	}
}

func TestDecodeManyErrorsSorted(t *testing.T) {
	var b strings.Builder
	for i := range 30 {
		b.WriteString("[[task]]\nbad = 1\n")
		_ = i
	}
	var d testDoc
	_, err := DecodeData("m.toml", []byte(b.String()), &d)
	if err == nil {
		t.Fatal("expected errors")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != MaxErrors+1 {
		t.Fatalf("got %d lines:\n%v", len(lines), err)
	}
	if lines[0] != `m.toml:2:1: key "task[0].bad": unknown key` || lines[1] != `m.toml:4:1: key "task[1].bad": unknown key` {
		t.Fatalf("unexpected order:\n%v", err)
	}
	if !strings.Contains(lines[MaxErrors], "10 more errors") {
		t.Fatalf("last line %q", lines[MaxErrors])
	}
}

func TestDecodeOK(t *testing.T) {
	doc := `
redis_url = "redis://h:1"   # comment
globs = ["a/*.toml", "b"]
ratio = 2
[dtu]
listen = ":22334"
timeout = "1m30s"
[[task]]
name = "t0"
count = 125
[limits]
"m:v" = 250.5
`
	var d testDoc
	pos, err := DecodeData("ok.toml", []byte(doc), &d)
	if err != nil {
		t.Fatal(err)
	}
	if d.DTU.Timeout.Duration != 90*time.Second || d.Ratio != 2 || d.Tasks[0].Count != 125 || d.Limits["m:v"] != 250.5 || len(d.Globs) != 2 {
		t.Fatalf("decoded %+v", d)
	}
	if !pos.Defined("dtu.timeout") || pos.Defined("dtu.max_connections") || !pos.Defined("task[0].count") || pos.Defined("task[1]") || !pos.Defined(`limits."m:v"`) {
		t.Fatal("Defined answers wrong")
	}
	if e := pos.Errorf("dtu.max_connections", "missing"); e.Line != 5 || e.Col != 2 {
		t.Fatalf("missing key should point at its table: %v", e)
	}
	if e := pos.Errorf("task[0].count", "too many"); e.Error() != `ok.toml:10:9: key "task[0].count": too many` {
		t.Fatalf("got %v", e)
	}
	if e := pos.Errorf("nothing.here", "x"); e.Line != 1 || e.Col != 1 {
		t.Fatalf("got %v", e)
	}
}

func TestDurationMarshal(t *testing.T) {
	b, err := Duration{90 * time.Second}.MarshalText()
	if err != nil || string(b) != "1m30s" {
		t.Fatalf("got %s %v", b, err)
	}
}

func TestDecodeFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.toml")
	if err := os.WriteFile(path, []byte("[dtu]\nlisten = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var d testDoc
	err := DecodeFile(path, &d)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2:10: key \"dtu.listen\"") {
		t.Fatalf("got %v", err)
	}
	if err := DecodeFile(filepath.Join(dir, "missing.toml"), &d); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}

func TestPositions(t *testing.T) {
	doc := "\ufeff" + `title = "a # not a comment"
multi = """
[not.a.table]
x = 1 \"""
"""
lit = '''
[[nor.this]]
'''
arr = [
  1,   # comment ]
  "two",
  [3, 4],
  { k = "v", "q.k" = 5 },
]
a.b."c:d" = 1
'quoted key' = 2
inline = { x.y = 1, z = [ { w = 2 } ] }

[srv . "sub.table"]
key = 3

[[t]]
v = 1
[t.sub]
w = 2
[[t.list]]
e = 1
[[t.list]]
e = 2
[[t]]
v = 2
[[t.list]]
e = 3
`
	p := Index("p.toml", []byte(doc))
	tests := []struct {
		path      string
		line, col int
	}{
		{"title", 1, 1},
		{"multi", 2, 1},
		{"lit", 6, 1},
		{"arr", 9, 1},
		{"arr[1]", 11, 3},
		{"arr[2][1]", 12, 7},
		{"arr[3].k", 13, 5},
		{`arr[3]."q.k"`, 13, 14},
		{"a", 15, 1},
		{"a.b", 15, 3},
		{`a.b."c:d"`, 15, 5},
		{`"quoted key"`, 16, 1},
		{"inline.x.y", 17, 14},
		{"inline.z[0].w", 17, 29},
		{"srv", 19, 2},
		{`srv."sub.table"`, 19, 8},
		{`srv."sub.table".key`, 20, 1},
		{"t[0]", 22, 3},
		{"t", 22, 3},
		{"t[0].v", 23, 1},
		{"t[0].sub.w", 25, 1},
		{"t[0].list[1].e", 29, 1},
		{"t[1]", 30, 3},
		{"t[1].v", 31, 1},
		{"t[1].list[0].e", 33, 1},
		{"t.list.e", 27, 1},
		{"t.v", 23, 1},
	}
	for _, tc := range tests {
		l, c, ok := p.Pos(tc.path)
		if !ok || l != tc.line || c != tc.col {
			t.Errorf("Pos(%q) = %d:%d %v, want %d:%d", tc.path, l, c, ok, tc.line, tc.col)
		}
	}
	for _, bad := range []string{"not", "not.a.table", "nor", "x", "t[2]", "t[0].list[2]"} {
		if _, _, ok := p.Pos(bad); ok {
			t.Errorf("Pos(%q) should not be found", bad)
		}
	}
	if l, c, _ := p.ValuePos("title"); l != 1 || c != 9 {
		t.Errorf("ValuePos(title) = %d:%d", l, c)
	}
	// The TOML decoder agrees that the document is valid.
	var v map[string]any
	if _, err := DecodeData("p.toml", []byte(doc), &v); err != nil {
		t.Fatal(err)
	}
}

func TestParsePath(t *testing.T) {
	for _, path := range []string{"a", "a.b", "a[0].b[12]", `a."b.c"[3].d`, `thresholds."m:v"`, `"a\"b"`} {
		els, ok := parsePath(path)
		if !ok || render(els) != path {
			t.Errorf("parsePath(%q) = %v %v (renders %q)", path, els, ok, render(els))
		}
	}
	for _, bad := range []string{"", ".", "a.", "a[", "a[x]", "a[-1]", `"a`, "a b", "a]"} {
		if _, ok := parsePath(bad); ok {
			t.Errorf("parsePath(%q) should fail", bad)
		}
	}
}

func TestNumberPattern(t *testing.T) {
	tests := []struct {
		pat  string
		n    int
		want string
		hasN bool
	}{
		{"{n}", 7, "7", true},
		{"DTU{n:04}", 7, "DTU0007", true},
		{"DTU{n:02}", 12345, "DTU12345", true},
		{"m{n}_{n:03}", 5, "m5_005", true},
		{"plain", 5, "plain", false},
		{"{name}", 5, "{name}", false},
		{"", 1, "", false},
	}
	for _, tc := range tests {
		p, err := ParseNumberPattern(tc.pat)
		if err != nil {
			t.Fatalf("%q: %v", tc.pat, err)
		}
		if got := p.Expand(tc.n); got != tc.want || p.HasN() != tc.hasN {
			t.Errorf("%q.Expand(%d) = %q (hasN %v), want %q", tc.pat, tc.n, got, p.HasN(), tc.want)
		}
	}
	for _, bad := range []string{"{n:4}", "{n:0}", "{n:021}", "{n:", "{n:0x}"} {
		if _, err := ParseNumberPattern(bad); err == nil {
			t.Errorf("%q should be refused", bad)
		}
	}
	if CheckRange(1, 100000) != nil || CheckRange(0, 100000) == nil || CheckRange(5, 4) == nil || CheckRange(-1, 4) == nil {
		t.Error("CheckRange")
	}
}

func TestServiceConfig(t *testing.T) {
	type svc struct {
		ServiceConfig
		History int `toml:"history"`
	}
	var s svc
	pos, err := DecodeData("s.toml", []byte("listen = \":8002\"\nhistory = 3\n"), &s)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(pos); err != nil {
		t.Fatal(err)
	}
	if s.Listen != ":8002" || s.History != 3 || s.RedisURL != DefaultRedisURL || s.LogLevel != "info" {
		t.Fatalf("got %+v", s)
	}
	s = svc{}
	pos, err = DecodeData("s.toml", []byte("log_level = \"loud\"\n"), &s)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(pos); err == nil || !strings.HasPrefix(err.Error(), `s.toml:1:13: key "log_level": unknown log level "loud"`) {
		t.Fatalf("got %v", err)
	}
}

func FuzzPositions(f *testing.F) {
	f.Add([]byte("a = 1\n[b]\nc = \"x\"\n[[d]]\ne = [1,\n2]\n"), "d[0].e")
	f.Add([]byte("x = \"\"\"\nmulti\\\n\"\"\"\ny = '''\n'''\nz = { a = [ {b = 1} ] }\n"), "z.a[0].b")
	f.Add([]byte("[a.\"b.c\".'d']\n\"k\\u0041\" = 1\n"), `a."b.c".d.kA`)
	f.Add([]byte("\ufeff[[a]]\n[[a.b]]\n[a.c]\n[[a]]\n"), "a[1]")
	f.Add([]byte("a = [[[[[[[[[[[{{{{{{"), "a[0][0]")
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		p := Index("f.toml", data)
		p.Pos(path)
		p.ValuePos(path)
		p.Defined(path)
		e := p.Errorf(path, "x")
		if e.Line < 1 || e.Col < 1 {
			t.Fatalf("bad position %d:%d", e.Line, e.Col)
		}
		for k := range p.at {
			if _, ok := parsePath(k); !ok && k != "" {
				t.Fatalf("indexed path %q does not parse", k)
			}
		}
		// Every key the TOML parser sees is indexed (within the nesting limits).
		var v map[string]any
		md, err := toml.Decode(string(data), &v)
		if err != nil || strings.Count(string(data), "[")+strings.Count(string(data), "{") > maxNesting {
			return
		}
		for _, k := range md.Keys() {
			if len(k) > maxSegments {
				continue
			}
			if _, _, ok := p.Pos(k.String()); !ok {
				t.Fatalf("key %q not indexed", k.String())
			}
		}
	})
}

func TestHostSite(t *testing.T) {
	if s := HostSite(); !ValidSite(s) {
		t.Fatalf("HostSite() = %q, not a valid site", s)
	}
	for s, ok := range map[string]bool{"edge-01": true, "a.b_c": true, "": false, "a b": false, "工厂": false} {
		if ValidSite(s) != ok {
			t.Errorf("ValidSite(%q) = %v", s, !ok)
		}
	}
}
