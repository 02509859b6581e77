package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/rig"
	"github.com/voltedge/voltedge/netsrv/trim"
	"github.com/voltedge/voltedge/scripts"
)

type redisOptions struct {
	rate, groups int
	phase        time.Duration
}

// runRedis measures what the data stream costs Redis: sync_batch calls of
// 21-point responses (every point mapped to a model point) at a fixed rate,
// in phase A without the data:samples stream (nothing is appended, as
// before netsrv first created its group) and in phase B with it and a
// consumer that reads, acknowledges and trims as netsrv does, A and B
// alternating -repeat times.
func runRedis(o options) error {
	rd := rig.NewRedis(o.work, mustPort())
	if err := rd.Start(); err != nil {
		return err
	}
	defer rd.Stop(5 * time.Second)
	ctx := context.Background()
	if err := rd.WaitReady(ctx, 10*time.Second); err != nil {
		return err
	}
	c, err := rd.Client("netbench")
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Do(ctx, c.B().FunctionLoad().Replace().FunctionCode(scripts.Source()).Build()).Error(); err != nil {
		return fmt.Errorf("FUNCTION LOAD: %w", err)
	}
	f := newFleet(1000, 21, 0)
	var mapping []string
	for ch := range f.channels {
		for p := range f.ids {
			mapping = append(mapping, keys.PointRef(f.channels[ch], f.ids[p]), keys.PointRef(f.models[ch], f.names[p]))
		}
	}
	for i := 0; i < len(mapping); i += 2000 {
		cmd := c.B().Hset().Key(keys.Mapping).FieldValue()
		for j := i; j < min(i+2000, len(mapping)); j += 2 {
			cmd = cmd.FieldValue(mapping[j], mapping[j+1])
		}
		if err := c.Do(ctx, cmd.Build()).Error(); err != nil {
			return err
		}
	}
	fmt.Printf("redis: %s, %d responses/s of %d points, %d responses per sync_batch call, phases of %s\n",
		rd.URL(), o.redis.rate, len(f.ids), o.redis.groups, o.redis.phase)
	var cpuA, cpuB, fcA, fcB, extra span
	seq := 0
	for r := 0; r < o.repeat; r++ {
		var a, b phaseResult
		for _, withStream := range []bool{false, true} {
			res, err := redisPhase(ctx, c, f, o.redis, withStream, &seq)
			if err != nil {
				return err
			}
			name := "A (no stream)"
			if withStream {
				name, b = "B (stream)", res
			} else {
				a = res
			}
			fmt.Printf("redis run %d %s: %d responses, Redis CPU %.1f us/response, fcall %.1f us/call = %.2f us/response; %s\n",
				r+1, name, res.responses, res.cpuPerResp, res.fcallPerCall, res.fcallPerCall/float64(o.redis.groups), res.detail)
		}
		cpuA.add(a.cpuPerResp)
		cpuB.add(b.cpuPerResp)
		fcA.add(a.fcallPerCall / float64(o.redis.groups))
		fcB.add(b.fcallPerCall / float64(o.redis.groups))
		extra.add(b.cpuPerResp - a.cpuPerResp)
	}
	fmt.Printf("REDIS CPU per synced response: A (no stream) %s us, B (stream + consumer) %s us, B-A %s us\n", cpuA, cpuB, extra)
	fmt.Printf("REDIS fcall sync_batch per response: A %s us, B %s us\n", fcA, fcB)
	return nil
}

type phaseResult struct {
	responses    int
	cpuPerResp   float64 // us of Redis CPU (user+sys) per response
	fcallPerCall float64 // usec_per_call of fcall
	detail       string
}

func info(ctx context.Context, c rueidis.Client, section string) (map[string]string, error) {
	s, err := c.Do(ctx, c.B().Info().Section(section).Build()).ToString()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

func cpuSeconds(ctx context.Context, c rueidis.Client) (float64, error) {
	m, err := info(ctx, c, "cpu")
	if err != nil {
		return 0, err
	}
	u, _ := strconv.ParseFloat(m["used_cpu_user"], 64)
	s, _ := strconv.ParseFloat(m["used_cpu_sys"], 64)
	return u + s, nil
}

// cmdstat reads calls and usec of one command from INFO commandstats.
func cmdstat(m map[string]string, cmd string) (calls, usec float64) {
	for _, kv := range strings.Split(m["cmdstat_"+cmd], ",") {
		k, v, _ := strings.Cut(kv, "=")
		x, _ := strconv.ParseFloat(v, 64)
		switch k {
		case "calls":
			calls = x
		case "usec":
			usec = x
		}
	}
	return
}

func redisPhase(ctx context.Context, c rueidis.Client, f *fleet, o redisOptions, withStream bool, seq *int) (phaseResult, error) {
	var res phaseResult
	if err := c.Do(ctx, c.B().Del().Key(keys.DataSamples).Build()).Error(); err != nil {
		return res, err
	}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	if withStream {
		if err := c.Do(ctx, c.B().XgroupCreate().Key(keys.DataSamples).Group("netsrv").Id("$").Mkstream().Build()).Error(); err != nil {
			stop()
			return res, err
		}
		wg.Add(1)
		go func() { defer wg.Done(); consume(pctx, c) }()
	}
	shed0 := shed(ctx, c)
	if err := c.Do(ctx, c.B().ConfigResetstat().Build()).Error(); err != nil {
		stop()
		return res, err
	}
	cpu0, err := cpuSeconds(ctx, c)
	if err != nil {
		stop()
		return res, err
	}
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	sent := 0
	for time.Since(start) < o.phase {
		<-tick.C
		due := int(time.Since(start).Seconds()*float64(o.rate)) / o.groups * o.groups
		var cmds rueidis.Commands
		for ; sent < due; sent += o.groups {
			args := make([]string, 0, o.groups*(3+2*len(f.ids)))
			ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
			for g := 0; g < o.groups; g++ {
				ch := *seq % len(f.channels)
				*seq++
				args = append(args, f.channels[ch], ts, strconv.Itoa(len(f.ids)))
				for p := range f.ids {
					args = append(args, f.ids[p], strconv.Itoa((*seq*31+p)%100000))
				}
			}
			cmds = append(cmds, c.B().Fcall().Function(scripts.FnSyncBatch).Numkeys(0).Arg(args...).Build())
		}
		for _, r := range c.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				tick.Stop()
				stop()
				return res, fmt.Errorf("sync_batch: %w", err)
			}
		}
	}
	tick.Stop()
	if withStream {
		time.Sleep(300 * time.Millisecond) // the consumer catches up
	}
	cpu1, err := cpuSeconds(ctx, c)
	stop()
	wg.Wait()
	if err != nil {
		return res, err
	}
	stats, err := info(ctx, c, "commandstats")
	if err != nil {
		return res, err
	}
	calls, usec := cmdstat(stats, "fcall")
	res.responses = sent
	res.cpuPerResp = (cpu1 - cpu0) * 1e6 / float64(sent)
	if calls > 0 {
		res.fcallPerCall = usec / calls
	}
	var parts []string
	for _, cmd := range []string{"xadd", "xreadgroup", "xack", "xtrim"} {
		n, us := cmdstat(stats, cmd)
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f calls %.2f us/response", cmd, n, us/float64(sent)))
		}
	}
	if d := shed(ctx, c) - shed0; d > 0 {
		parts = append(parts, fmt.Sprintf("SHED %d entries", d))
	}
	res.detail = strings.Join(parts, ", ")
	if withStream {
		if err := c.Do(ctx, c.B().XgroupDestroy().Key(keys.DataSamples).Group("netsrv").Build()).Error(); err != nil {
			return res, err
		}
	}
	return res, nil
}

func shed(ctx context.Context, c rueidis.Client) int64 {
	n, _ := c.Do(ctx, c.B().Hget().Key(keys.ComsrvStats).Field(contract.DataSamplesShed).Build()).AsInt64()
	return n
}

// consume reads the data stream as netsrv's group, acknowledges what it
// read and trims the stream to what was acknowledged every second.
func consume(ctx context.Context, c rueidis.Client) {
	last := time.Now()
	for ctx.Err() == nil {
		res, err := c.Do(ctx, c.B().Xreadgroup().Group("netsrv", "bench").Count(500).Block(100).Streams().Key(keys.DataSamples).Id(">").Build()).AsXRead()
		if err == nil {
			var ids []string
			for _, e := range res[keys.DataSamples] {
				ids = append(ids, e.ID)
			}
			if len(ids) > 0 {
				c.Do(ctx, c.B().Xack().Key(keys.DataSamples).Group("netsrv").Id(ids...).Build())
			}
		}
		if time.Since(last) > time.Second {
			last = time.Now()
			trim.Acked(ctx, c, keys.DataSamples)
		}
	}
}
