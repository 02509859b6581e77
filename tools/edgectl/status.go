package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
)

// statusChunk is how many HGETALLs go to Redis in one pipeline.
const statusChunk = 1000

// channelStatus is one channel's status hash.
type channelStatus struct {
	Channel string            `json:"channel"`
	Online  bool              `json:"online"`
	Known   bool              `json:"known"` // the status hash exists
	Fields  map[string]string `json:"status"`
}

type statusSummary struct {
	Channels int `json:"channels"`
	Online   int `json:"online"`
	Offline  int `json:"offline"`
}

// listAllUpTo is the number of channels up to which status lists them all.
const listAllUpTo = 50

func runStatus(ctx context.Context, a *app, args []string) error {
	fs := a.flags("status", "[-all] [-json] [-sort id|online] [CHANNEL...]",
		"Shows the link state and counters of comsrv's channels (the set "+keys.Channels+"),\n"+
			"or of the CHANNELs given. Up to "+strconv.Itoa(listAllUpTo)+" channels are all listed; beyond that only those\n"+
			"that are not online, unless -all. The summary line always counts every channel.")
	all := fs.Bool("all", false, "list every channel, online ones too")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	sortBy := fs.String("sort", "id", "order of the list: id (natural order) or online (online first, then id)")
	pos, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	if *sortBy != "id" && *sortBy != "online" {
		return usageErr(fs, "-sort must be id or online, not %q", *sortBy)
	}
	for _, ch := range pos {
		if !keys.ValidID(ch) {
			return usageErr(fs, "invalid channel id %q", ch)
		}
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := a.oneShot(ctx)
	defer cancel()

	ids := pos
	if len(ids) == 0 {
		ids, err = c.Do(ctx, c.B().Smembers().Key(keys.Channels).Build()).AsStrSlice()
		if err != nil {
			return fmt.Errorf("read channel set %s: %w", keys.Channels, err)
		}
	}
	st, err := readStatuses(ctx, c, ids)
	if err != nil {
		return err
	}
	var sum statusSummary
	sum.Channels = len(st)
	for i := range st {
		if st[i].Online {
			sum.Online++
		}
	}
	sum.Offline = sum.Channels - sum.Online
	slices.SortFunc(st, func(x, y channelStatus) int {
		if *sortBy == "online" && x.Online != y.Online {
			if x.Online {
				return -1
			}
			return 1
		}
		return naturalCompare(x.Channel, y.Channel)
	})
	shown := st
	if !*all && len(pos) == 0 && len(st) > listAllUpTo {
		shown = slices.DeleteFunc(slices.Clone(st), func(s channelStatus) bool { return s.Online })
	}
	upload, err := c.Do(ctx, c.B().Hgetall().Key(keys.NetsrvStatus).Build()).AsStrMap()
	if err != nil {
		return fmt.Errorf("read %s: %w", keys.NetsrvStatus, err)
	}
	if *asJSON {
		return writeJSON(a, struct {
			Summary  statusSummary     `json:"summary"`
			Channels []channelStatus   `json:"channels"`
			Upload   map[string]string `json:"upload,omitempty"`
		}{sum, nonNil(shown), upload})
	}
	if len(shown) > 0 {
		a.statusTable(shown)
	}
	fmt.Fprintf(a.stdout, "%d channels, %d online, %d offline\n", sum.Channels, sum.Online, sum.Offline)
	a.uploadLine(upload)
	return nil
}

// uploadLine prints netsrv's upload state (keys.NetsrvStatus), if netsrv
// runs: MySQL, the spool and the backlog of each stream in Redis.
func (a *app) uploadLine(u map[string]string) {
	if len(u) == 0 {
		fmt.Fprintf(a.stdout, "upload: no %s (netsrv not running)\n", keys.NetsrvStatus)
		return
	}
	var backlog []string
	for _, name := range []string{"data", "events", "alarms", "controls"} {
		v, ok := u[contract.NetsrvBacklogPrefix+name]
		if !ok {
			continue
		}
		pending, unread, _ := strings.Cut(v, " ")
		if unread == "-1" {
			unread = "?"
		}
		backlog = append(backlog, fmt.Sprintf("%s %s unread/%s pending", name, unread, pending))
	}
	fmt.Fprintf(a.stdout, "upload (netsrv, site %s): MySQL %s; spool %s records, %s, oldest %ss, %s dropped; Redis backlog: %s; updated %s\n",
		dash(u[contract.NetsrvSite]), dash(u[contract.NetsrvMySQL]), dash(u[contract.NetsrvSpoolPending]),
		humanBytes(u[contract.NetsrvSpoolBytes]), dash(u[contract.NetsrvSpoolOldestAgeS]), dash(u[contract.NetsrvSpoolDropped]),
		strings.Join(backlog, ", "), a.when(u[contract.NetsrvUpdatedAt], a.now()))
}

func nonNil(s []channelStatus) []channelStatus {
	if s == nil {
		return []channelStatus{}
	}
	return s
}

func writeJSON(a *app, v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// readStatuses reads the status hashes of ids, pipelined in chunks.
func readStatuses(ctx context.Context, c rueidis.Client, ids []string) ([]channelStatus, error) {
	out := make([]channelStatus, 0, len(ids))
	cmds := make(rueidis.Commands, 0, min(len(ids), statusChunk))
	for start := 0; start < len(ids); start += statusChunk {
		chunk := ids[start:min(start+statusChunk, len(ids))]
		cmds = cmds[:0]
		for _, id := range chunk {
			cmds = append(cmds, c.B().Hgetall().Key(keys.ChannelStatus(id)).Build())
		}
		for i, r := range c.DoMulti(ctx, cmds...) {
			m, err := r.AsStrMap()
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", keys.ChannelStatus(chunk[i]), err)
			}
			out = append(out, channelStatus{Channel: chunk[i], Online: m[contract.ChannelOnline] == "1", Known: len(m) > 0, Fields: m})
		}
	}
	return out, nil
}

func (a *app) statusTable(st []channelStatus) {
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tSTATE\tREGISTRATION\tREMOTE\tCONNECTED\tLAST HEARTBEAT\tPOLLS\tTIMEOUTS\tCRC\tEXC\tIN\tOUT\tSYNC ERR")
	now := a.now()
	for _, s := range st {
		f := s.Fields
		state := "offline"
		switch {
		case s.Online:
			state = "online"
		case !s.Known:
			state = "never"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			s.Channel, state, dash(f[contract.ChannelRegistration]), dash(f[contract.ChannelRemote]),
			a.when(f[contract.ChannelConnectedAt], now), a.when(f[contract.ChannelLastHeartbeat], now),
			dash(f[contract.ChannelPollsOK]), dash(f[contract.ChannelTimeouts]), dash(f[contract.ChannelCRCErrors]), dash(f[contract.ChannelExceptions]),
			humanBytes(f[contract.ChannelBytesIn]), humanBytes(f[contract.ChannelBytesOut]), dash(f[contract.ChannelSyncErrors]))
	}
	_ = tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// when renders a Unix-millisecond time as local time and age: "15:04:05 (3s ago)"
// today, "2006-01-02 15:04:05 (2d03h ago)" otherwise; unparsable text is shown as is.
func (a *app) when(ms string, now time.Time) string {
	if ms == "" || ms == "0" {
		return "-"
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n < 0 {
		return ms
	}
	t := time.UnixMilli(n).In(a.loc)
	now = now.In(a.loc)
	layout := "2006-01-02 15:04:05"
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		layout = "15:04:05"
	}
	age := now.Sub(t)
	if age < 0 {
		return t.Format(layout) + " (in " + shortDuration(-age) + ")"
	}
	return t.Format(layout) + " (" + shortDuration(age) + " ago)"
}

// shortDuration renders d with two units at most: 45s, 3m12s, 2h05m, 3d04h.
func shortDuration(d time.Duration) string {
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

// humanBytes renders a byte count as 512, 1.5K, 20.3M, 1.2G (powers of 1024).
func humanBytes(s string) string {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return dash(s)
	}
	if n < 1024 {
		return strconv.FormatUint(n, 10)
	}
	x := float64(n)
	for _, u := range []string{"K", "M", "G", "T"} {
		x /= 1024
		if x < 1024 || u == "T" {
			return strconv.FormatFloat(x, 'f', 1, 64) + u
		}
	}
	return s
}

// naturalCompare orders strings with their digit runs compared as numbers,
// so that "ch2" < "ch10" and "2" < "10".
func naturalCompare(x, y string) int {
	i, j := 0, 0
	for i < len(x) && j < len(y) {
		if isDigit(x[i]) && isDigit(y[j]) {
			i0, j0 := i, j
			for i < len(x) && isDigit(x[i]) {
				i++
			}
			for j < len(y) && isDigit(y[j]) {
				j++
			}
			a, b := trimZeros(x[i0:i]), trimZeros(y[j0:j])
			if len(a) != len(b) {
				return cmpInt(len(a), len(b))
			}
			if a != b {
				if a < b {
					return -1
				}
				return 1
			}
			continue
		}
		if x[i] != y[j] {
			return cmpInt(int(x[i]), int(y[j]))
		}
		i++
		j++
	}
	if c := cmpInt(len(x)-i, len(y)-j); c != 0 {
		return c
	}
	if x < y {
		return -1
	}
	if x > y {
		return 1
	}
	return 0
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func trimZeros(s string) string {
	for len(s) > 1 && s[0] == '0' {
		s = s[1:]
	}
	return s
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
