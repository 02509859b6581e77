package main

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
)

func runMonitor(ctx context.Context, a *app, args []string) error {
	fs := a.flags("monitor", "[-interval 5s] [-count N]",
		"Prints one line per interval: Redis used memory, connected clients, operations per second,\n"+
			"number of keys, then every field of comsrv's stats hash ("+keys.ComsrvStats+").")
	interval := fs.Duration("interval", 5*time.Second, "time between lines")
	count := fs.Int("count", 0, "stop after N lines (0: until interrupted)")
	pos, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *interval <= 0 {
		return usageErr(fs, "-interval must be positive")
	}
	if *count < 0 {
		return usageErr(fs, "-count must not be negative")
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	defer c.Close()
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		line, err := a.monitorLine(ctx, c, *interval)
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted
			}
			return err
		}
		fmt.Fprintln(a.stdout, line)
		if *count > 0 && n >= *count {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// monitorLine reads the figures of one tick in one round trip.
func (a *app) monitorLine(ctx context.Context, c rueidis.Client, limit time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, max(limit, 5*time.Second))
	defer cancel()
	res := c.DoMulti(ctx,
		c.B().Info().Section("memory", "clients", "stats").Build(),
		c.B().Dbsize().Build(),
		c.B().Hgetall().Key(keys.ComsrvStats).Build(),
	)
	text, err := res[0].ToString()
	if err != nil {
		return "", fmt.Errorf("redis info: %w", err)
	}
	dbsize, err := res[1].AsInt64()
	if err != nil {
		return "", fmt.Errorf("redis dbsize: %w", err)
	}
	stats, err := res[2].AsStrMap()
	if err != nil {
		return "", fmt.Errorf("read %s: %w", keys.ComsrvStats, err)
	}
	info := parseInfo(text)
	var b strings.Builder
	b.WriteString(a.now().In(a.loc).Format("2006-01-02 15:04:05"))
	fmt.Fprintf(&b, " mem=%s clients=%s ops/s=%s keys=%d",
		dash(info["used_memory_human"]), dash(info["connected_clients"]),
		dash(info["instantaneous_ops_per_sec"]), dbsize)
	b.WriteString(" | comsrv:")
	if len(stats) == 0 {
		b.WriteString(" -")
	}
	names := make([]string, 0, len(stats))
	for k := range stats {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		b.WriteString(" " + k + "=" + stats[k])
	}
	return b.String(), nil
}

// parseInfo reads the "name:value" lines of an INFO reply.
func parseInfo(text string) map[string]string {
	m := make(map[string]string, 64)
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}
