package conf

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxRange is the largest number of entries one range may declare.
const MaxRange = 100000

// NumberPattern is a text in which "{n}" stands for a number and "{n:0W}"
// for the number padded with zeros to W digits (W 1..20), as used by channel
// and mapping ranges: "DTU{n:04}" expands to "DTU0007" for 7.
type NumberPattern struct {
	parts []patternPart
	hasN  bool
}

type patternPart struct {
	lit   string
	num   bool
	width int
}

// ParseNumberPattern parses s. A "{" not followed by "n}" or "n:" is literal.
func ParseNumberPattern(s string) (NumberPattern, error) {
	var p NumberPattern
	for {
		i := strings.Index(s, "{n")
		for i >= 0 && !(strings.HasPrefix(s[i:], "{n}") || strings.HasPrefix(s[i:], "{n:")) {
			j := strings.Index(s[i+2:], "{n")
			if j < 0 {
				i = -1
				break
			}
			i += 2 + j
		}
		if i < 0 {
			if s != "" {
				p.parts = append(p.parts, patternPart{lit: s})
			}
			return p, nil
		}
		if i > 0 {
			p.parts = append(p.parts, patternPart{lit: s[:i]})
		}
		s = s[i:]
		if strings.HasPrefix(s, "{n}") {
			p.parts = append(p.parts, patternPart{num: true})
			s = s[3:]
		} else {
			end := strings.IndexByte(s, '}')
			if end < 0 {
				return NumberPattern{}, fmt.Errorf("unclosed placeholder %q (want {n} or {n:0W})", s)
			}
			spec := s[3:end]
			w, err := strconv.Atoi(strings.TrimPrefix(spec, "0"))
			if len(spec) < 2 || spec[0] != '0' || err != nil || w < 1 || w > 20 {
				return NumberPattern{}, fmt.Errorf("bad placeholder %q (want {n} or {n:0W} with W 1..20)", s[:end+1])
			}
			p.parts = append(p.parts, patternPart{num: true, width: w})
			s = s[end+1:]
		}
		p.hasN = true
	}
}

// HasN reports whether the pattern contains a placeholder.
func (p NumberPattern) HasN() bool { return p.hasN }

// Expand returns the text with every placeholder replaced by n.
func (p NumberPattern) Expand(n int) string {
	if !p.hasN && len(p.parts) == 1 {
		return p.parts[0].lit
	}
	var buf [64]byte
	b := buf[:0]
	for _, part := range p.parts {
		if !part.num {
			b = append(b, part.lit...)
			continue
		}
		if n < 0 {
			b = append(b, '-')
		}
		u := uint64(n)
		if n < 0 {
			u = uint64(-int64(n))
		}
		var d [20]byte
		digits := strconv.AppendUint(d[:0], u, 10)
		for range part.width - len(digits) {
			b = append(b, '0')
		}
		b = append(b, digits...)
	}
	return string(b)
}

// CheckRange validates a range's bounds: 0 ≤ first ≤ last and at most
// MaxRange entries.
func CheckRange(first, last int) error {
	switch {
	case first < 0:
		return fmt.Errorf("first must not be negative")
	case last < first:
		return fmt.Errorf("last (%d) is below first (%d)", last, first)
	case last-first >= MaxRange:
		return fmt.Errorf("range of %d entries exceeds the limit of %d", last-first+1, MaxRange)
	}
	return nil
}

// LiteralPattern is a pattern without placeholders: s expands to itself.
func LiteralPattern(s string) NumberPattern {
	return NumberPattern{parts: []patternPart{{lit: s}}}
}
