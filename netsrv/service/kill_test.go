package service

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/scripts"
)

// TestKilledAnywhere: the netsrv binary is killed (SIGKILL) again and again
// while data flows — between a commit in MySQL and the acknowledgement in
// Redis, in the middle of a spool write, wherever it happens to be — and
// started again. Every sample ends up in MySQL exactly once, and nothing is
// left pending in Redis.
func TestKilledAnywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the netsrv binary")
	}
	r := newRig(t, "")
	bin := filepath.Join(t.TempDir(), "netsrv")
	build := exec.Command("go", "build", "-o", bin, "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfgFile := filepath.Join(t.TempDir(), "netsrv.toml")
	doc := fmt.Sprintf("site = %q\nlisten = \"127.0.0.1:0\"\n[mysql]\ndsn = %q\n[spool]\ndir = %q\nsync_every = \"20ms\"\n[upload]\nbatch_entries = 50\nretry_every = \"200ms\"\n",
		r.cfg.Site, r.cfg.MySQL.DSN, r.cfg.Spool.Dir)
	if err := os.WriteFile(cfgFile, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "netsrv.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "-config", cfgFile, "-redis", r.redis.URL())
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	cmd := start()
	until(t, "the data stream's group", 20*time.Second, func() bool {
		n, _ := r.rc.Do(context.Background(), r.rc.B().Exists().Key(keys.DataSamples).Build()).AsInt64()
		return n == 1
	})

	var sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // 2 channels, a response every 2 ms
		defer wg.Done()
		ts := int64(1_700_000_000_000)
		for {
			select {
			case <-stop:
				return
			default:
			}
			ts++
			for _, ch := range []string{"1001", "1002"} {
				err := r.rc.Do(context.Background(), r.rc.B().Fcall().Function(scripts.FnSyncBatch).Numkeys(0).
					Arg(ch, strconv.FormatInt(ts, 10), "3", "1", "1", "2", "2", "3", "3").Build()).Error()
				if err == nil {
					sent.Add(3)
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	for i := range 6 {
		time.Sleep(time.Duration(150+97*i) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if i == 2 {
			r.proxy.setCut(true) // one restart while MySQL is gone: the spool
		}
		if i == 4 {
			r.proxy.setCut(false)
		}
		cmd = start()
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	want := int(sent.Load())
	until(t, fmt.Sprintf("%d rows", want), 60*time.Second, func() bool { return r.count("SELECT COUNT(*) FROM data") == want })
	until(t, "nothing pending", 10*time.Second, func() bool {
		p, err := r.rc.Do(context.Background(), r.rc.B().Xpending().Key(keys.DataSamples).Group(Group).Build()).ToArray()
		if err != nil || len(p) == 0 {
			return false
		}
		n, _ := p[0].AsInt64()
		return n == 0
	})
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	t.Logf("%d samples sent while netsrv was killed 6 times; %d rows stored", want, r.count("SELECT COUNT(*) FROM data"))
}
