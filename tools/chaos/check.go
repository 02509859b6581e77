package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/voltedge/voltedge/internal/contract"
)

// Fault names, in the order they run; -faults takes them or their numbers.
const (
	faultRedis  = "redis"  // 1: Redis restarted without persistence
	faultLinks  = "links"  // 2: every DTU link dropped at once
	faultComsrv = "comsrv" // 3: comsrv killed with commands queued
)

var faultOrder = []string{faultRedis, faultLinks, faultComsrv}

// parseFaults reads -faults: "all", or a comma-separated list of fault
// names or numbers (1 redis, 2 links, 3 comsrv). The result keeps the run
// order whatever the order given.
func parseFaults(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "all" {
		return slices.Clone(faultOrder), nil
	}
	want := map[string]bool{}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(strings.ToLower(f))
		if n, err := strconv.Atoi(f); err == nil && n >= 1 && n <= len(faultOrder) {
			f = faultOrder[n-1]
		}
		if !slices.Contains(faultOrder, f) {
			return nil, fmt.Errorf("unknown fault %q (want all, or some of 1 %s, 2 %s, 3 %s)", f, faultRedis, faultLinks, faultComsrv)
		}
		want[f] = true
	}
	var out []string
	for _, f := range faultOrder {
		if want[f] {
			out = append(out, f)
		}
	}
	return out, nil
}

// hashDiff compares a hash with what it held before: the fields missing
// and the fields whose value changed. Fields added since are not counted.
func hashDiff(want, got map[string]string) (missing, changed int) {
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing++
		case g != v:
			changed++
		}
	}
	return missing, changed
}

// eventCount counts, per channel of channels, the entries of type typ in
// events (comsrv:events entries) and returns the channels with none and
// those with more than one. Entries of other channels are ignored.
func eventCount(events []map[string]string, typ string, channels []string) (missing, duplicated []string) {
	n := perChannel(events, typ)
	for _, ch := range channels {
		switch c := n[ch]; {
		case c == 0:
			missing = append(missing, ch)
		case c > 1:
			duplicated = append(duplicated, ch)
		}
	}
	return missing, duplicated
}

// withEvent lists the channels of channels with at least one entry of
// type typ in events.
func withEvent(events []map[string]string, typ string, channels []string) []string {
	n := perChannel(events, typ)
	var out []string
	for _, ch := range channels {
		if n[ch] > 0 {
			out = append(out, ch)
		}
	}
	return out
}

// perChannel counts the entries of type typ in events by channel.
func perChannel(events []map[string]string, typ string) map[string]int {
	n := map[string]int{}
	for _, e := range events {
		if e[contract.EventType] == typ {
			n[e[contract.EventChannel]]++
		}
	}
	return n
}

// legalStatuses are the outcomes a command may end with when comsrv is
// killed under it: executed, too late, no link, may have been written, or
// the link broke in flight.
var legalStatuses = []string{string(contract.OK), string(contract.Expired), string(contract.Offline), "unknown", string(contract.Failed)}

// commandTally is what became of a set of commands.
type commandTally struct {
	// ByStatus counts the commands by the status they ended with.
	ByStatus map[string]int
	// Unanswered have neither a cmd:results entry nor a cmd:result:{id} hash.
	Unanswered []string
	// Duplicated have more than one cmd:results entry.
	Duplicated []string
	// Inconsistent have an entry but no hash or a hash but no entry, or
	// entries and hash that name different statuses.
	Inconsistent []string
	// Unexpected ended with a status outside legalStatuses.
	Unexpected []string
}

// tallyCommands judges the commands ids from their cmd:results entries
// (id → the status of each entry for it) and their cmd:result:{id} hashes
// (id → status; absent when there is no hash).
func tallyCommands(ids []string, entries map[string][]string, hashes map[string]string) commandTally {
	t := commandTally{ByStatus: map[string]int{}}
	for _, id := range ids {
		es := entries[id]
		h, hasHash := hashes[id]
		if len(es) == 0 && !hasHash {
			t.Unanswered = append(t.Unanswered, id)
			continue
		}
		if len(es) > 1 {
			t.Duplicated = append(t.Duplicated, id)
		}
		status := h
		if !hasHash {
			status = es[0]
		}
		if len(es) == 0 || !hasHash || slices.ContainsFunc(es, func(s string) bool { return s != h }) {
			t.Inconsistent = append(t.Inconsistent, id)
		}
		t.ByStatus[status]++
		if !slices.Contains(legalStatuses, status) {
			t.Unexpected = append(t.Unexpected, id)
		}
	}
	return t
}

// answered is the number of commands with an outcome.
func (t commandTally) answered(total int) int { return total - len(t.Unanswered) }

// statusCounts renders ByStatus as "ok 150, offline 3", most frequent first.
func (t commandTally) statusCounts() string {
	if len(t.ByStatus) == 0 {
		return "none"
	}
	names := make([]string, 0, len(t.ByStatus))
	for s := range t.ByStatus {
		names = append(names, s)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := t.ByStatus[names[i]], t.ByStatus[names[j]]
		if a != b {
			return a > b
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, s := range names {
		parts[i] = fmt.Sprintf("%s %d", s, t.ByStatus[s])
	}
	return strings.Join(parts, ", ")
}

// some names the first few of items, "a, b, c … (+7)", for a report detail.
func some(items []string) string {
	const show = 5
	if len(items) <= show {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:show], ", ") + fmt.Sprintf(" … (+%d)", len(items)-show)
}

// row is one check of a fault: how many things were lost or wrong when it
// was judged, when it first held (zero: never within the bound), and a
// detail naming what was wrong.
type row struct {
	Check  string
	Wrong  int
	Held   time.Duration
	Never  bool
	Detail string
	// Static rows are counted once, after the fact: they have no time.
	Static bool
}

// report is the result of one fault.
type report struct {
	Name string
	// What says how the fault was made.
	What string
	Rows []row
	// Recovery is how long until every check held; Recovered is false
	// when they did not all hold within Bound.
	Recovery  time.Duration
	Recovered bool
	Bound     time.Duration
	// Unanswered commands (fault 3), counted apart from the wrong states.
	Unanswered int
	// Notes are extra lines (outcome counts, timings of the fault itself).
	Notes []string
	// Err is set when the fault could not be run as planned.
	Err error
}

// wrong is the number of lost or wrong states of the report, unanswered
// commands not included. A fault that could not be run as planned counts
// as one more.
func (r report) wrong() int {
	n := 0
	if r.Err != nil {
		n++
	}
	for _, w := range r.Rows {
		n += w.Wrong
	}
	return n - r.Unanswered
}

// write prints the report as a small table.
func (r report) write(w io.Writer) {
	fmt.Fprintf(w, "\n== %s: %s\n", r.Name, r.What)
	if r.Err != nil {
		fmt.Fprintf(w, "error: %v\n", r.Err)
	}
	if len(r.Rows) > 0 {
		fmt.Fprintf(w, "| check | lost/wrong | held after | detail |\n|---|---|---|---|\n")
		for _, x := range r.Rows {
			held := seconds(x.Held)
			switch {
			case x.Static:
				held = "-"
			case x.Never:
				held = "not within " + seconds(r.Bound)
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s |\n", x.Check, x.Wrong, held, x.Detail)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, n)
	}
	fmt.Fprintf(w, "lost/wrong: %d\n", r.wrong()+r.Unanswered)
	if r.Recovered {
		fmt.Fprintf(w, "recovery: %s\n", seconds(r.Recovery))
	} else {
		fmt.Fprintf(w, "recovery: not within %s\n", seconds(r.Bound))
	}
}

// seconds renders d as "1.2 s".
func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// summary is the final line and whether the run is a failure.
func summary(reports []report) (string, bool) {
	wrong, unanswered := 0, 0
	for _, r := range reports {
		wrong += r.wrong()
		unanswered += r.Unanswered
	}
	return fmt.Sprintf("chaos: %d wrong states, %d unanswered commands", wrong, unanswered), wrong > 0 || unanswered > 0
}
