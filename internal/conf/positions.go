package conf

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// Limits that keep the index cheap on hostile input: deeper nesting or
// longer key paths are not indexed (errors about them fall back to the
// nearest indexed parent).
const (
	maxNesting  = 64  // nested inline arrays and tables
	maxSegments = 128 // segments of one key path
)

// Positions indexes where each key of a TOML document is written. It is
// built by [Decode] or [Index] and answers by key path ("dtu.listen",
// "channel[3].template", or the index-less form, which names the first
// occurrence).
type Positions struct {
	// File is the path reported in errors.
	File string

	at   map[string]where
	tree map[string]any // the decoded document, when known: answers Defined exactly
}

// where is a key's position and its value's position (1-based).
type where struct {
	kLine, kCol int32
	vLine, vCol int32
}

// Index scans TOML text and records the position of every key: table and
// array-of-tables headers (elements counted), dotted and quoted keys, keys of
// inline tables and elements of arrays, skipping strings, multi-line strings
// and multi-line arrays. It never fails: on malformed text it indexes what it
// can.
func Index(file string, text []byte) *Positions {
	p := &Positions{File: file, at: make(map[string]where)}
	sc := scanner{s: text, p: p, line: 1, arrays: make(map[string]int)}
	if len(text) >= 3 && text[0] == 0xef && text[1] == 0xbb && text[2] == 0xbf {
		sc.i, sc.lineStart = 3, 3 // the TOML decoder drops the BOM too
	}
	sc.run()
	return p
}

// Pos returns where the key at path is written.
func (p *Positions) Pos(path string) (line, col int, ok bool) {
	if p == nil {
		return 0, 0, false
	}
	w, ok := p.at[path]
	if !ok {
		return 0, 0, false
	}
	return int(w.kLine), int(w.kCol), true
}

// ValuePos returns where the value of the key at path starts (for a table
// header, where its name is).
func (p *Positions) ValuePos(path string) (line, col int, ok bool) {
	if p == nil {
		return 0, 0, false
	}
	w, ok := p.at[path]
	if !ok {
		return 0, 0, false
	}
	return int(w.vLine), int(w.vCol), true
}

// Defined reports whether the document sets the key at path (an exact,
// indexed path such as "point[2].bit").
func (p *Positions) Defined(path string) bool {
	if p == nil {
		return false
	}
	if p.tree == nil {
		_, ok := p.at[path]
		return ok
	}
	els, ok := parsePath(path)
	if !ok || len(els) == 0 {
		return false
	}
	var cur any = p.tree
	for _, e := range els {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[e.name]; !ok {
			return false
		}
		for _, i := range e.idx {
			switch a := cur.(type) {
			case []map[string]any:
				if i >= len(a) {
					return false
				}
				cur = a[i]
			case []any:
				if i >= len(a) {
					return false
				}
				cur = a[i]
			default:
				return false
			}
		}
	}
	return true
}

// Errorf returns an error about the value at path, positioned at the value
// if it is written, else at the nearest enclosing key that is (a missing
// key is reported where its table starts), else at 1:1.
func (p *Positions) Errorf(path, format string, args ...any) *Error {
	e := &Error{Key: path, Msg: fmt.Sprintf(format, args...)}
	if p == nil {
		e.Line, e.Col = 1, 1
		return e
	}
	e.File = p.File
	e.Line, e.Col = p.locate(path, true)
	return e
}

// KeyErrorf is like Errorf but points at the key rather than its value.
func (p *Positions) KeyErrorf(path, format string, args ...any) *Error {
	e := &Error{Key: path, Msg: fmt.Sprintf(format, args...)}
	if p == nil {
		e.Line, e.Col = 1, 1
		return e
	}
	e.File = p.File
	e.Line, e.Col = p.locate(path, false)
	return e
}

// Where returns "file:line:col" of the value at path (see Errorf).
func (p *Positions) Where(path string) string {
	return p.Errorf(path, "").Where()
}

func (p *Positions) locate(path string, value bool) (int, int) {
	if w, ok := p.at[path]; ok {
		if value {
			return int(w.vLine), int(w.vCol)
		}
		return int(w.kLine), int(w.kCol)
	}
	els, ok := parsePath(path)
	if !ok {
		return 1, 1
	}
	// Walk up: the parent element with its index, then without it.
	for n := len(els); n >= 1; n-- {
		if n < len(els) {
			if w, ok := p.at[render(els[:n])]; ok {
				return int(w.kLine), int(w.kCol)
			}
		}
		if len(els[n-1].idx) > 0 {
			els[n-1].idx = nil
			if w, ok := p.at[render(els[:n])]; ok {
				return int(w.kLine), int(w.kCol)
			}
		}
	}
	return 1, 1
}

// elem is one segment of a key path: a key and the array indices after it.
type elem struct {
	name string
	idx  []int
}

// quoteKey writes one key segment as TOML does in MetaData key names:
// bare if it can be, else double-quoted.
func quoteKey(s string) string {
	if s != "" {
		bare := true
		for i := 0; i < len(s); i++ {
			if !isBare(s[i]) {
				bare = false
				break
			}
		}
		if bare {
			return s
		}
	}
	return toml.Key{s}.String()
}

func render(els []elem) string {
	var b strings.Builder
	for i, e := range els {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(quoteKey(e.name))
		for _, i := range e.idx {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(i))
			b.WriteByte(']')
		}
	}
	return b.String()
}

// parsePath splits a rendered key path into its segments.
func parsePath(path string) ([]elem, bool) {
	var els []elem
	i := 0
	for i < len(path) {
		if len(els) >= maxSegments {
			return nil, false
		}
		var name string
		switch {
		case path[i] == '"':
			j := i + 1
			for j < len(path) && path[j] != '"' {
				if path[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(path) {
				return nil, false
			}
			name = unescape(path[i+1 : j])
			i = j + 1
		case isBare(path[i]):
			j := i
			for j < len(path) && isBare(path[j]) {
				j++
			}
			name = path[i:j]
			i = j
		default:
			return nil, false
		}
		e := elem{name: name}
		for i < len(path) && path[i] == '[' && len(e.idx) < maxNesting {
			j := strings.IndexByte(path[i:], ']')
			if j < 0 {
				return nil, false
			}
			n, err := strconv.Atoi(path[i+1 : i+j])
			if err != nil || n < 0 {
				return nil, false
			}
			e.idx = append(e.idx, n)
			i += j + 1
		}
		els = append(els, e)
		if i < len(path) {
			if path[i] != '.' || i+1 == len(path) {
				return nil, false
			}
			i++
		}
	}
	return els, len(els) > 0
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// unescape decodes the escapes of a TOML basic string; an invalid escape is
// kept as written.
func unescape(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b = append(b, c)
			continue
		}
		i++
		switch s[i] {
		case 'b':
			b = append(b, '\b')
		case 't':
			b = append(b, '\t')
		case 'n':
			b = append(b, '\n')
		case 'f':
			b = append(b, '\f')
		case 'r':
			b = append(b, '\r')
		case 'e':
			b = append(b, 0x1b)
		case '"', '\\':
			b = append(b, s[i])
		case 'x', 'u', 'U':
			n := 2
			switch s[i] {
			case 'u':
				n = 4
			case 'U':
				n = 8
			}
			if i+1+n > len(s) {
				b = append(b, '\\', s[i])
				continue
			}
			v, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32)
			if err != nil || !utf8.ValidRune(rune(v)) {
				b = append(b, '\\', s[i])
				continue
			}
			b = utf8.AppendRune(b, rune(v))
			i += n
		default:
			b = append(b, '\\', s[i])
		}
	}
	return string(b)
}

// kpath is a key path being built, rendered with and without indices.
type kpath struct {
	full, bare string
	n          int
}

func (k kpath) child(name string) kpath {
	seg := quoteKey(name)
	if k.n == 0 {
		return kpath{seg, seg, 1}
	}
	return kpath{k.full + "." + seg, k.bare + "." + seg, k.n + 1}
}

func (k kpath) at(i int) kpath {
	return kpath{k.full + "[" + strconv.Itoa(i) + "]", k.bare, k.n}
}

// scanner is a forgiving TOML tokenizer that only records positions.
type scanner struct {
	s         []byte
	i         int
	line      int
	lineStart int
	p         *Positions
	arrays    map[string]int // indexed path of each array of tables → elements seen
}

type keyPart struct {
	name      string
	line, col int
}

func (sc *scanner) eof() bool { return sc.i >= len(sc.s) }

func (sc *scanner) peek() byte {
	if sc.i >= len(sc.s) {
		return 0
	}
	return sc.s[sc.i]
}

func (sc *scanner) has(prefix string) bool {
	return len(sc.s)-sc.i >= len(prefix) && string(sc.s[sc.i:sc.i+len(prefix)]) == prefix
}

func (sc *scanner) next() {
	if sc.i >= len(sc.s) {
		return
	}
	if sc.s[sc.i] == '\n' {
		sc.line++
		sc.lineStart = sc.i + 1
	}
	sc.i++
}

func (sc *scanner) pos() (int, int) { return sc.line, sc.i - sc.lineStart + 1 }

func (sc *scanner) skipSpace() {
	for !sc.eof() && (sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t') {
		sc.i++
	}
}

// skipRest skips to the end of the line, leaving the newline.
func (sc *scanner) skipRest() {
	for !sc.eof() && sc.s[sc.i] != '\n' {
		sc.i++
	}
}

// skipBlank skips white space, newlines and comments.
func (sc *scanner) skipBlank() {
	for !sc.eof() {
		switch sc.s[sc.i] {
		case ' ', '\t', '\r', '\n':
			sc.next()
		case '#':
			sc.skipRest()
		default:
			return
		}
	}
}

func (sc *scanner) record(k kpath, kl, kc, vl, vc int) {
	w := where{int32(kl), int32(kc), int32(vl), int32(vc)}
	if _, ok := sc.p.at[k.full]; !ok {
		sc.p.at[k.full] = w
	}
	if _, ok := sc.p.at[k.bare]; !ok {
		sc.p.at[k.bare] = w
	}
}

func (sc *scanner) run() {
	var table kpath
	for {
		sc.skipBlank()
		if sc.eof() {
			return
		}
		c := sc.peek()
		switch {
		case c == '[':
			table = sc.header(table)
		case c == '"' || c == '\'' || isBare(c):
			sc.keyValue(table, 0)
		}
		sc.skipSpace()
		if !sc.eof() && sc.peek() != '\n' {
			sc.skipRest() // a comment or junk after the statement
		}
	}
}

// header reads [table] or [[array.table]] and returns the new table path.
func (sc *scanner) header(cur kpath) kpath {
	sc.next()
	arr := false
	if sc.peek() == '[' {
		arr = true
		sc.next()
	}
	parts, ok := sc.key()
	if !ok {
		return cur
	}
	sc.skipSpace()
	if sc.peek() != ']' {
		return cur
	}
	sc.next()
	if arr {
		if sc.peek() != ']' {
			return cur
		}
		sc.next()
	}
	var k kpath
	for j, part := range parts {
		k = k.child(part.name)
		if arr && j == len(parts)-1 {
			n := sc.arrays[k.full]
			sc.arrays[k.full] = n + 1
			k = k.at(n)
		} else if n := sc.arrays[k.full]; n > 0 {
			k = k.at(n - 1)
		}
		sc.record(k, part.line, part.col, part.line, part.col)
	}
	return k
}

// key reads a dotted key; it stops before anything that is not part of it.
func (sc *scanner) key() ([]keyPart, bool) {
	var parts []keyPart
	for {
		sc.skipSpace()
		l, c := sc.pos()
		var name string
		switch ch := sc.peek(); {
		case ch == '"':
			raw, ok := sc.quoted('"')
			if !ok {
				return nil, false
			}
			name = unescape(raw)
		case ch == '\'':
			raw, ok := sc.quoted('\'')
			if !ok {
				return nil, false
			}
			name = raw
		case isBare(ch):
			j := sc.i
			for j < len(sc.s) && isBare(sc.s[j]) {
				j++
			}
			name = string(sc.s[sc.i:j])
			sc.i = j
		default:
			return nil, false
		}
		if len(parts) >= maxSegments {
			return nil, false
		}
		parts = append(parts, keyPart{name, l, c})
		sc.skipSpace()
		if sc.peek() != '.' {
			return parts, true
		}
		sc.i++
	}
}

// quoted reads a single-line string opened by q and returns its raw text.
func (sc *scanner) quoted(q byte) (string, bool) {
	sc.i++
	start := sc.i
	for !sc.eof() {
		c := sc.s[sc.i]
		switch {
		case c == q:
			raw := string(sc.s[start:sc.i])
			sc.i++
			return raw, true
		case c == '\n':
			return "", false
		case c == '\\' && q == '"' && sc.i+1 < len(sc.s) && sc.s[sc.i+1] != '\n':
			sc.i += 2
		default:
			sc.i++
		}
	}
	return "", false
}

// keyValue reads `key = value` in the table at base.
func (sc *scanner) keyValue(base kpath, depth int) {
	parts, ok := sc.key()
	if !ok {
		if !sc.eof() && sc.peek() != '\n' {
			sc.next()
		}
		return
	}
	if base.n+len(parts) > maxSegments {
		return
	}
	k := base
	for j, part := range parts {
		k = k.child(part.name)
		if j < len(parts)-1 {
			sc.record(k, part.line, part.col, part.line, part.col)
		}
	}
	sc.skipSpace()
	if sc.peek() != '=' {
		return
	}
	sc.next()
	sc.skipSpace()
	vl, vc := sc.pos()
	last := parts[len(parts)-1]
	sc.record(k, last.line, last.col, vl, vc)
	sc.value(k, depth)
}

// value skips one value, indexing the keys and elements inside it.
func (sc *scanner) value(k kpath, depth int) {
	switch c := sc.peek(); {
	case sc.has(`"""`):
		sc.multiline(`"""`, true)
	case sc.has(`'''`):
		sc.multiline(`'''`, false)
	case c == '"' || c == '\'':
		sc.quoted(c)
	case c == '[':
		sc.array(k, depth+1)
	case c == '{':
		sc.inlineTable(k, depth+1)
	default:
		for !sc.eof() {
			switch sc.s[sc.i] {
			case ',', ']', '}', '#', '\n', '\r':
				return
			}
			sc.i++
		}
	}
}

// multiline skips a multi-line string including its delimiters (and up to
// two quotes that TOML allows right before the closing ones).
func (sc *scanner) multiline(delim string, escapes bool) {
	for range 3 {
		sc.next()
	}
	for !sc.eof() {
		if escapes && sc.s[sc.i] == '\\' {
			sc.next()
			sc.next()
			continue
		}
		if sc.has(delim) {
			for range 3 {
				sc.next()
			}
			for extra := 0; extra < 2 && sc.peek() == delim[0]; extra++ {
				sc.next()
			}
			return
		}
		sc.next()
	}
}

func (sc *scanner) array(k kpath, depth int) {
	sc.next() // [
	if depth > maxNesting {
		sc.i = len(sc.s)
		return
	}
	for idx := 0; ; {
		sc.skipBlank()
		if sc.eof() {
			return
		}
		switch sc.peek() {
		case ']':
			sc.next()
			return
		case ',':
			sc.next()
			continue
		}
		before := sc.i
		l, c := sc.pos()
		e := k.at(idx)
		sc.record(e, l, c, l, c)
		sc.value(e, depth)
		idx++
		if sc.i == before {
			sc.next() // junk such as a stray '}'
		}
	}
}

func (sc *scanner) inlineTable(k kpath, depth int) {
	sc.next() // {
	if depth > maxNesting {
		sc.i = len(sc.s)
		return
	}
	for {
		sc.skipBlank()
		if sc.eof() {
			return
		}
		switch c := sc.peek(); {
		case c == '}':
			sc.next()
			return
		case c == '"' || c == '\'' || isBare(c):
			sc.keyValue(k, depth)
		default:
			sc.next() // ',' or junk
		}
	}
}

// Child returns the path of the key name inside the table at path, with
// name quoted if TOML needs it: Child("thresholds", "m:v") is
// `thresholds."m:v"`.
func Child(path, name string) string {
	if path == "" {
		return quoteKey(name)
	}
	return path + "." + quoteKey(name)
}
