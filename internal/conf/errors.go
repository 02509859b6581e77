package conf

import (
	"errors"
	"fmt"
	"strconv"
)

// MaxErrors is how many errors one load reports at most; the rest are counted.
const MaxErrors = 20

// Error is a problem found in a configuration file, with where it is.
type Error struct {
	File string // path of the file as given to the loader
	Line int    // 1-based line
	Col  int    // 1-based byte column
	Key  string // key path, e.g. "task[0].count"; empty for some syntax errors
	Msg  string
}

// Error formats the error as `file:line:col: key "k": message`.
func (e *Error) Error() string {
	b := make([]byte, 0, len(e.File)+len(e.Key)+len(e.Msg)+32)
	if e.File != "" {
		b = append(b, e.File...)
		b = append(b, ':')
	}
	b = strconv.AppendInt(b, int64(e.Line), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(e.Col), 10)
	b = append(b, ": "...)
	if e.Key != "" {
		b = append(b, "key "...)
		b = strconv.AppendQuote(b, e.Key)
		b = append(b, ": "...)
	}
	b = append(b, e.Msg...)
	return string(b)
}

// Where returns "file:line:col", for messages that point at another place
// ("already defined at ...").
func (e *Error) Where() string {
	return fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Col)
}

// Errors collects the errors of one load, keeping at most MaxErrors of them.
// The zero value is ready to use.
type Errors struct {
	list    []error
	dropped int
}

// Add records err; nil is ignored and joined errors are added one by one.
func (e *Errors) Add(err error) {
	if err == nil {
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, x := range j.Unwrap() {
			e.Add(x)
		}
		return
	}
	if len(e.list) >= MaxErrors {
		e.dropped++
		return
	}
	e.list = append(e.list, err)
}

// Addf records p.Errorf(path, format, args...).
func (e *Errors) Addf(p *Positions, path, format string, args ...any) {
	e.Add(p.Errorf(path, format, args...))
}

// Len is the number of errors recorded, including those not kept.
func (e *Errors) Len() int { return len(e.list) + e.dropped }

// Err returns nil, the single error, or all of them joined (one per line),
// followed by a count of the errors left out.
func (e *Errors) Err() error {
	switch {
	case len(e.list) == 0:
		return nil
	case len(e.list) == 1 && e.dropped == 0:
		return e.list[0]
	}
	all := e.list
	if e.dropped > 0 {
		all = append(all[:len(all):len(all)], fmt.Errorf("... and %d more errors", e.dropped))
	}
	return errors.Join(all...)
}
