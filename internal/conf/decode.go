package conf

import (
	"cmp"
	"encoding"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// MaxFileSize bounds the size of a configuration file.
const MaxFileSize = 32 << 20

// DecodeFile decodes the TOML file at path into v strictly: unknown keys,
// values of the wrong type and syntax errors are refused, each reported as
// an *Error with file, line, column and key (several are joined).
func DecodeFile(path string, v any) error {
	_, err := Decode(path, v)
	return err
}

// Decode is DecodeFile that also returns the position index, so that the
// caller can validate values and report problems with positions. The index
// is returned (possibly partial) even when decoding fails.
func Decode(path string, v any) (*Positions, error) {
	data, err := readFile(path)
	if err != nil {
		return &Positions{File: path}, err
	}
	return DecodeData(path, data, v)
}

// DecodeData decodes TOML text as Decode does; file is only used in errors.
func DecodeData(file string, data []byte, v any) (*Positions, error) {
	if len(data) > MaxFileSize {
		return &Positions{File: file}, &Error{File: file, Line: 1, Col: 1, Msg: fmt.Sprintf("file larger than %d bytes", MaxFileSize)}
	}
	p := Index(file, data)
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return p, fmt.Errorf("conf: decode %s: need a non-nil pointer, got %T", file, v)
	}
	text := string(data)
	var tree map[string]any
	if _, err := toml.Decode(text, &tree); err != nil {
		return p, syntaxError(file, err)
	}
	p.tree = tree

	c := checker{p: p, fields: make(map[reflect.Type]map[string]reflect.Type)}
	c.value(kpath{}, tree, rv.Elem().Type())
	if len(c.errs) > 0 {
		slices.SortStableFunc(c.errs, func(a, b *Error) int {
			return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
		})
		var all Errors
		for _, e := range c.errs {
			all.Add(e)
		}
		all.dropped += c.extra
		return p, all.Err()
	}

	md, err := toml.Decode(text, v)
	if err != nil {
		return p, decodeError(p, err)
	}
	if und := md.Undecoded(); len(und) > 0 && !c.sawAny {
		var all Errors
		for _, k := range und {
			all.Add(p.KeyErrorf(k.String(), "unknown key"))
		}
		return p, all.Err()
	}
	return p, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return data, nil
}

func syntaxError(file string, err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return &Error{File: file, Line: 1, Col: 1, Msg: err.Error()}
	}
	e := &Error{File: file, Line: pe.Position.Line, Col: pe.Position.Col, Key: pe.LastKey, Msg: pe.Message}
	e.Line = max(e.Line, 1)
	e.Col = max(e.Col, 1)
	return e
}

// lastKeyRE extracts the position the TOML decoder names in errors that are
// not ParseErrors.
var lastKeyRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "((?:[^"\\]|\\.)*)"\): (.*)$`)

// decodeError converts an error of the TOML decoder proper, which the type
// check should have caught already.
func decodeError(p *Positions, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		e := p.Errorf(pe.LastKey, "%s", pe.Message)
		if pe.Position.Line > 0 {
			e.Line, e.Col = pe.Position.Line, max(pe.Position.Col, 1)
		}
		return e
	}
	if m := lastKeyRE.FindStringSubmatch(err.Error()); m != nil {
		key, uerr := strconv.Unquote(`"` + m[2] + `"`)
		if uerr != nil {
			key = m[2]
		}
		return p.Errorf(key, "%s", m[3])
	}
	return p.Errorf("", "%s", strings.TrimPrefix(err.Error(), "toml: "))
}

var (
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	tomlUnmarshalerType = reflect.TypeFor[toml.Unmarshaler]()
	timeType            = reflect.TypeFor[time.Time]()
)

// checker compares a decoded document with the Go type it is meant for,
// before the TOML decoder fills it, so that every mismatch is reported with
// its indexed key path.
type checker struct {
	p      *Positions
	fields map[reflect.Type]map[string]reflect.Type
	errs   []*Error
	extra  int  // errors beyond those kept
	sawAny bool // an interface{} destination: the decoder leaves its keys undecoded
}

func (c *checker) fail(e *Error) {
	if len(c.errs) < 4*MaxErrors {
		c.errs = append(c.errs, e)
	} else {
		c.extra++
	}
}

func (c *checker) errorf(k kpath, format string, args ...any) {
	c.fail(c.p.Errorf(k.full, format, args...))
}

func (c *checker) value(k kpath, v any, t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	pt := reflect.PointerTo(t)
	switch {
	case pt.Implements(tomlUnmarshalerType):
		return
	case t == timeType:
		if _, ok := v.(time.Time); !ok {
			c.errorf(k, "expected a datetime, found %s", typeName(v))
		}
		return
	case pt.Implements(textUnmarshalerType):
		s, ok := v.(string)
		if !ok {
			c.errorf(k, "expected a string, found %s", typeName(v))
			return
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			c.errorf(k, "%v", err)
		}
		return
	}
	switch t.Kind() {
	case reflect.String:
		if _, ok := v.(string); !ok {
			c.errorf(k, "expected a string, found %s", typeName(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			c.errorf(k, "expected a boolean, found %s", typeName(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(int64)
		if !ok {
			c.errorf(k, "expected an integer, found %s", typeName(v))
			return
		}
		bits := t.Bits()
		lo, hi := int64(-1)<<(bits-1), int64(uint64(1)<<(bits-1)-1)
		if n < lo || n > hi {
			c.errorf(k, "%d is out of range (%d..%d)", n, lo, hi)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n, ok := v.(int64)
		if !ok {
			c.errorf(k, "expected an integer, found %s", typeName(v))
			return
		}
		hi := uint64(math.MaxUint64) >> (64 - t.Bits())
		if n < 0 || uint64(n) > hi {
			c.errorf(k, "%d is out of range (0..%d)", n, hi)
		}
	case reflect.Float32, reflect.Float64:
		switch n := v.(type) {
		case float64:
			if t.Kind() == reflect.Float32 && !math.IsInf(n, 0) && math.Abs(n) > math.MaxFloat32 {
				c.errorf(k, "%g is out of range for a 32-bit float", n)
			}
		case int64:
			if n < -(1<<53) || n > 1<<53 {
				c.errorf(k, "%d cannot be represented exactly as a float", n)
			}
		default:
			c.errorf(k, "expected a number, found %s", typeName(v))
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			c.errorf(k, "expected a table, found %s", typeName(v))
			return
		}
		fields := c.fieldsOf(t)
		for _, name := range sortedKeys(m) {
			ck := k.child(name)
			ft, ok := fields[name]
			if !ok {
				c.fail(c.p.KeyErrorf(ck.full, "unknown key%s", suggest(name, fields)))
				continue
			}
			c.value(ck, m[name], ft)
		}
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			c.errorf(k, "cannot decode into %s", t)
			return
		}
		m, ok := v.(map[string]any)
		if !ok {
			c.errorf(k, "expected a table, found %s", typeName(v))
			return
		}
		for _, name := range sortedKeys(m) {
			c.value(k.child(name), m[name], t.Elem())
		}
	case reflect.Slice, reflect.Array:
		var n int
		switch a := v.(type) {
		case []map[string]any:
			n = len(a)
			for i, e := range a {
				c.value(k.at(i), e, t.Elem())
			}
		case []any:
			n = len(a)
			for i, e := range a {
				c.value(k.at(i), e, t.Elem())
			}
		default:
			c.errorf(k, "expected an array, found %s", typeName(v))
			return
		}
		if t.Kind() == reflect.Array && n != t.Len() {
			c.errorf(k, "expected an array of %d elements, found %d", t.Len(), n)
		}
	case reflect.Interface:
		if t.NumMethod() != 0 {
			c.errorf(k, "cannot decode into %s", t)
		}
		c.sawAny = true
	default:
		c.errorf(k, "cannot decode into %s", t)
	}
}

// fieldsOf maps the TOML key of each field of struct type t to the field's
// type, with untagged embedded structs flattened as the TOML decoder does.
func (c *checker) fieldsOf(t reflect.Type) map[string]reflect.Type {
	if f, ok := c.fields[t]; ok {
		return f
	}
	f := make(map[string]reflect.Type)
	c.fields[t] = f
	addFields(f, t, 0)
	return f
}

func addFields(f map[string]reflect.Type, t reflect.Type, depth int) {
	var embedded []reflect.Type
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
		if name == "-" {
			continue
		}
		ft := sf.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if sf.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			embedded = append(embedded, ft)
			continue
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		f[name] = sf.Type
	}
	if depth > 8 {
		return
	}
	for _, et := range embedded { // outer fields win over embedded ones
		sub := make(map[string]reflect.Type)
		addFields(sub, et, depth+1)
		for n, ft := range sub {
			if _, ok := f[n]; !ok {
				f[n] = ft
			}
		}
	}
}

// suggest names the known key closest to an unknown one: the same but for
// case, or at most two edits away.
func suggest(name string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		if strings.EqualFold(f, name) {
			return fmt.Sprintf(" (did you mean %q?)", f)
		}
		if len(name) >= 3 && len(name) <= 64 && len(f) <= 64 {
			if d := editDistance(name, f); d < bestD {
				best, bestD = f, d
			}
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func sortedKeys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a datetime"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("%T", v)
}
