// Package sample decides which samples of a model point netsrv stores.
//
// A point polled every 100 ms would write ten rows a second; most sites want
// fewer. Rules select points by a "model:point" pattern and choose a mode:
//
//   - every: every sample (the default for points no rule selects)
//   - change: a sample whose value differs from the last stored one
//   - deadband: a sample that moved from the last stored value by at least
//     an absolute amount, or by a percentage of it
//   - interval: at most one sample per interval
//
// change and deadband take an optional max_gap: a sample is stored anyway
// when the last stored one is that old, so a flat line still shows that the
// point was read. The first sample of a point is always stored.
package sample

import (
	"errors"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"time"
)

// Modes of a Rule.
const (
	Every    = "every"
	Change   = "change"
	Deadband = "deadband"
	Interval = "interval"
)

// DefaultMaxPoints bounds the points a Sampler remembers. A point beyond it
// is stored on every sample (never dropped) and counted in Stats.Untracked.
const DefaultMaxPoints = 1_000_000

// Rule selects points and the samples of them to keep.
type Rule struct {
	// Points is a pattern over "model:point" in which * matches any run of
	// characters other than ':' and ? one such character ("power_meter:*",
	// "*:temperature", "meter*:energy"). A pattern without ':' selects every
	// point of the models it matches.
	Points string `toml:"points"`
	// Mode is every, change, deadband or interval.
	Mode string `toml:"mode"`
	// Deadband is the least change that is stored in deadband mode: a number
	// ("0.5") or a percentage of the last stored value ("2%").
	Deadband string `toml:"deadband"`
	// Every is the interval of interval mode, e.g. "10s".
	Every string `toml:"every"`
	// MaxGap stores a sample in change and deadband mode when the last stored
	// one is at least this old, e.g. "15m"; empty means never.
	MaxGap string `toml:"max_gap"`
}

// rule is a checked Rule.
type rule struct {
	points   string
	mode     string
	band     float64
	percent  bool
	every    int64 // ms
	maxGap   int64 // ms; 0: none
	fallback bool  // the implicit every rule
}

// pointKey names a model point without building a string.
type pointKey struct{ model, point string }

// point is what a Sampler remembers of one point.
type point struct {
	rule   *rule
	num    float64
	text   string
	isNum  bool
	keptTS int64
	kept   bool
}

// Stats counts a Sampler's decisions.
type Stats struct {
	Kept, Skipped, Untracked uint64
}

// Sampler applies rules to a stream of samples. It is not safe for
// concurrent use; netsrv has one per upload loop.
type Sampler struct {
	rules     []rule
	fallback  rule
	points    map[pointKey]*point
	maxPoints int
	stats     Stats
}

// New checks rules (the first that matches a point applies) and returns a
// Sampler that remembers at most maxPoints points (DefaultMaxPoints if 0).
// Errors name the rule by its position, counting from 1.
func New(rules []Rule, maxPoints int) (*Sampler, error) {
	if maxPoints <= 0 {
		maxPoints = DefaultMaxPoints
	}
	s := &Sampler{
		fallback:  rule{points: "*:*", mode: Every, fallback: true},
		points:    make(map[pointKey]*point),
		maxPoints: maxPoints,
	}
	var errs []error
	for i, r := range rules {
		c, err := check(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("sample rule %d (%q): %w", i+1, r.Points, err))
			continue
		}
		s.rules = append(s.rules, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// check validates one rule.
func check(r Rule) (rule, error) {
	c := rule{points: r.Points, mode: r.Mode}
	if c.mode == "" {
		c.mode = Every
	}
	if r.Points == "" {
		return c, errors.New("points: must not be empty")
	}
	if _, err := path.Match(r.Points, ""); err != nil || strings.ContainsAny(r.Points, "[]\\") {
		return c, errors.New("points: only * and ? are special")
	}
	if !strings.Contains(c.points, ":") {
		c.points += ":*"
	}
	dur := func(key, s string) (int64, error) {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("%s: %q is not a positive duration like \"10s\"", key, s)
		}
		return d.Milliseconds(), nil
	}
	var err error
	switch c.mode {
	case Every:
	case Change:
	case Deadband:
		b := strings.TrimSpace(r.Deadband)
		c.percent = strings.HasSuffix(b, "%")
		c.band, err = strconv.ParseFloat(strings.TrimSuffix(b, "%"), 64)
		if err != nil || c.band <= 0 || math.IsInf(c.band, 0) {
			return c, fmt.Errorf("deadband: %q is not a positive number or percentage like \"0.5\" or \"2%%\"", r.Deadband)
		}
	case Interval:
		if c.every, err = dur("every", r.Every); err != nil {
			return c, err
		}
	default:
		return c, fmt.Errorf("mode: unknown mode %q (want every, change, deadband or interval)", r.Mode)
	}
	if r.Deadband != "" && c.mode != Deadband {
		return c, fmt.Errorf("deadband: only for mode deadband")
	}
	if r.Every != "" && c.mode != Interval {
		return c, fmt.Errorf("every: only for mode interval")
	}
	if r.MaxGap != "" {
		if c.mode != Change && c.mode != Deadband {
			return c, fmt.Errorf("max_gap: only for modes change and deadband")
		}
		if c.maxGap, err = dur("max_gap", r.MaxGap); err != nil {
			return c, err
		}
	}
	return c, nil
}

// match reports whether pattern matches "model:point": path.Match with ':'
// in the role of '/', so * stays inside one part.
func match(pattern, model, pt string) bool {
	p := strings.ReplaceAll(pattern, "/", "\x00")
	name := strings.ReplaceAll(model, "/", "\x00") + "/" + strings.ReplaceAll(pt, "/", "\x00")
	ok, _ := path.Match(strings.ReplaceAll(p, ":", "/"), name)
	return ok
}

// ruleFor returns the first rule that selects model:pt.
func (s *Sampler) ruleFor(model, pt string) *rule {
	for i := range s.rules {
		if match(s.rules[i].points, model, pt) {
			return &s.rules[i]
		}
	}
	return &s.fallback
}

// Keep reports whether the sample (value as the decimal string Redis holds,
// ts in Unix ms) of model point pt is to be stored, and remembers it if so.
func (s *Sampler) Keep(model, pt, value string, ts int64) bool {
	if len(s.rules) == 0 {
		s.stats.Kept++
		return true
	}
	p := s.points[pointKey{model, pt}]
	if p == nil {
		r := s.ruleFor(model, pt)
		if r.fallback {
			s.stats.Kept++
			return true
		}
		if len(s.points) >= s.maxPoints {
			s.stats.Untracked++
			s.stats.Kept++
			return true
		}
		p = &point{rule: r}
		s.points[pointKey{strings.Clone(model), strings.Clone(pt)}] = p
	}
	num, err := strconv.ParseFloat(value, 64)
	isNum := err == nil && !math.IsNaN(num)
	keep := p.decide(value, num, isNum, ts)
	if keep {
		p.text = ""
		if !isNum {
			p.text = strings.Clone(value) // only text is compared as text
		}
		p.num, p.isNum, p.keptTS, p.kept = num, isNum, ts, true
		s.stats.Kept++
	} else {
		s.stats.Skipped++
	}
	return keep
}

// decide applies the point's rule to a sample.
func (p *point) decide(value string, num float64, isNum bool, ts int64) bool {
	r := p.rule
	if !p.kept || r.mode == Every {
		return true
	}
	if ts < p.keptTS {
		return false // older than what is stored: a late duplicate
	}
	if r.maxGap > 0 && ts-p.keptTS >= r.maxGap {
		return true
	}
	switch r.mode {
	case Change:
		if isNum && p.isNum {
			return num != p.num
		}
		return value != p.text
	case Deadband:
		if !isNum || !p.isNum {
			return value != p.text
		}
		band := r.band
		if r.percent {
			band = math.Abs(p.num) * r.band / 100
			if band == 0 {
				return num != p.num
			}
		}
		return math.Abs(num-p.num) >= band
	case Interval:
		return ts-p.keptTS >= r.every
	}
	return true
}

// Stats returns the counts so far.
func (s *Sampler) Stats() Stats { return s.stats }
