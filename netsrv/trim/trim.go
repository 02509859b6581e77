// Package trim removes from a Redis stream the entries that every consumer
// group has acknowledged, and nothing else.
//
// Redis 7.0 has no XADD … ACKED: MAXLEN and MINID delete entries whether a
// group has read them or not. The writers of the data stream therefore do
// not trim it (beyond their documented cap); netsrv calls Acked, which trims
// up to the oldest entry some group still needs.
package trim

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// Result is what one Acked call found and did.
type Result struct {
	Groups  int    // consumer groups of the stream
	MinID   string // the oldest entry id some group still needs; "" when there is no group
	Trimmed int64  // entries removed
}

// Acked removes the entries of stream that every consumer group has
// acknowledged: those older than each group's oldest pending entry, or, for
// a group with nothing pending, than its next undelivered entry. A stream
// without groups is left as it is: nobody has said what it no longer needs.
func Acked(ctx context.Context, c rueidis.Client, stream string) (Result, error) {
	min, groups, err := Floor(ctx, c, stream)
	res := Result{Groups: groups, MinID: min}
	if err != nil || min == "" {
		return res, err
	}
	n, err := c.Do(ctx, c.B().Xtrim().Key(stream).Minid().Threshold(min).Build()).AsInt64()
	if err != nil {
		return res, fmt.Errorf("trim: xtrim %s minid %s: %w", stream, min, err)
	}
	res.Trimmed = n
	return res, nil
}

// Floor returns the oldest entry id of stream that some consumer group
// still needs ("" when the stream has no groups) and the number of groups.
func Floor(ctx context.Context, c rueidis.Client, stream string) (string, int, error) {
	infos, err := c.Do(ctx, c.B().XinfoGroups().Key(stream).Build()).ToArray()
	if rueidis.IsRedisNil(err) || isNoSuchKey(err) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("trim: xinfo groups %s: %w", stream, err)
	}
	var floor id
	have := false
	for _, g := range infos {
		m, err := g.AsMap()
		if err != nil {
			return "", 0, fmt.Errorf("trim: xinfo groups %s: %w", stream, err)
		}
		nameMsg, pendingMsg, lastMsg := m["name"], m["pending"], m["last-delivered-id"]
		name, _ := nameMsg.ToString()
		pending, _ := pendingMsg.AsInt64()
		last, _ := lastMsg.ToString()
		var need id
		if pending > 0 {
			sum, err := c.Do(ctx, c.B().Xpending().Key(stream).Group(name).Build()).ToArray()
			if err != nil || len(sum) < 2 {
				return "", 0, fmt.Errorf("trim: xpending %s %s: %v", stream, name, err)
			}
			s, _ := sum[1].ToString()
			if need, err = parseID(s); err != nil {
				return "", 0, fmt.Errorf("trim: xpending %s %s: %w", stream, name, err)
			}
		} else {
			l, err := parseID(last)
			if err != nil {
				return "", 0, fmt.Errorf("trim: group %s of %s: %w", name, stream, err)
			}
			need = l.next()
		}
		if !have || need.less(floor) {
			floor, have = need, true
		}
	}
	if !have {
		return "", 0, nil
	}
	return floor.String(), len(infos), nil
}

// isNoSuchKey recognises XINFO's answer for a missing stream.
func isNoSuchKey(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	return ok && strings.Contains(strings.ToLower(re.Error()), "no such key")
}

// id is a stream entry id.
type id struct{ ms, seq uint64 }

func parseID(s string) (id, error) {
	a, b, ok := strings.Cut(s, "-")
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return id{}, fmt.Errorf("bad stream id %q", s)
	}
	return id{ms, seq}, nil
}

func (i id) next() id {
	if i.seq == ^uint64(0) {
		return id{i.ms + 1, 0}
	}
	return id{i.ms, i.seq + 1}
}

func (i id) less(o id) bool { return i.ms < o.ms || i.ms == o.ms && i.seq < o.seq }

func (i id) String() string {
	return strconv.FormatUint(i.ms, 10) + "-" + strconv.FormatUint(i.seq, 10)
}
