// Package rig runs the processes of a VoltEdge test rig on loopback: a
// private redis-server (never a shared one), comsrv with a generated
// configuration, and dtusim. The benchmark (tools/benchrun) and the fault
// runner (tools/chaos) use it.
package rig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/redisconn"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Proc is a child process whose standard error is appended to a log file,
// so a process started again keeps one log.
type Proc struct {
	// Name names the process in errors.
	Name string
	// Path and Args are the command line.
	Path string
	Args []string
	// Log is the file standard error goes to ("" discards it).
	Log string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts the process; it may be called again after it exited.
func (p *Proc) Start() error {
	if p.cmd != nil && !p.Exited() {
		return fmt.Errorf("start %s: already running", p.Name)
	}
	cmd := exec.Command(p.Path, p.Args...)
	// A rig whose driver dies (a crash, SIGKILL, a closed pipe) does not
	// stay behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var logFile *os.File
	if p.Log != "" {
		f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("start %s: %w", p.Name, err)
		}
		logFile = f
		cmd.Stderr = f
	}
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.cmd, p.done, p.err = cmd, make(chan struct{}), nil
	go func(done chan struct{}) {
		p.err = cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		close(done)
	}(p.done)
	return nil
}

// Pid is the process id, 0 before Start.
func (p *Proc) Pid() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Exited reports whether the process has ended (true before Start).
func (p *Proc) Exited() bool {
	if p.done == nil {
		return true
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *Proc) Kill() error {
	if p.Exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", p.Name, err)
	}
	<-p.done
	return nil
}

// Stop asks the process to end (SIGINT) and kills it after grace.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.Kill()
	}
}

// Redis is a private redis-server on 127.0.0.1 without persistence, as
// docker-compose.edge.yml runs it: a restart loses every key.
type Redis struct {
	Proc
	// Port is the port it listens on.
	Port int
}

// NewRedis describes a redis-server on port with its files in dir; Start it.
func NewRedis(dir string, port int) *Redis {
	return &Redis{Port: port, Proc: Proc{
		Name: "redis-server",
		Path: "redis-server",
		Args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--logfile", filepath.Join(dir, "redis.log")},
	}}
}

// URL is the server's redis:// URL.
func (r *Redis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d", r.Port) }

// WaitReady waits until the server answers PING, for at most timeout.
func (r *Redis) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if r.Exited() {
			return fmt.Errorf("redis-server on port %d exited: %v", r.Port, r.err)
		}
		if last = ping(ctx, r.URL()); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("redis-server on port %d not ready within %s: %w", r.Port, timeout, last)
}

// ping connects a client to url and sends PING.
func ping(ctx context.Context, url string) error {
	c, err := redisconn.New(url, redisconn.Options{ClientName: "rig-ping"})
	if err != nil {
		return err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return c.Do(cctx, c.B().Ping().Build()).Error()
}

// Client connects a client named name to the server.
func (r *Redis) Client(name string) (rueidis.Client, error) {
	return redisconn.New(r.URL(), redisconn.Options{ClientName: name})
}

// Config is what WriteConfig generates: a comsrv configuration with one
// transparent listener and channels "1".."N" (registrations "DTU1".."DTUN")
// of one template, and a mapping of every point of every channel to model
// "meter{n}".
type Config struct {
	// Dir receives comsrv.toml, channels/ and mappings.toml.
	Dir string
	// Templates is the template directory; Template the template of every channel.
	Templates, Template string
	// N is the number of channels.
	N int
	// DTUPort is the DTU listener's port on 127.0.0.1.
	DTUPort int
	// RedisURL is the Redis comsrv writes to.
	RedisURL string
	// LogLevel is comsrv's log level (default "warn").
	LogLevel string
	// Frames is frames.keep (-1: comsrv's default).
	Frames int
	// ExtraComsrv is appended to comsrv.toml; ExtraMappings to mappings.toml.
	ExtraComsrv, ExtraMappings string
}

// ComsrvConfig is the path of the generated comsrv.toml.
func (c Config) ComsrvConfig() string { return filepath.Join(c.Dir, "comsrv.toml") }

// Mappings is the path of the generated mappings.toml.
func (c Config) Mappings() string { return filepath.Join(c.Dir, "mappings.toml") }

// WriteConfig writes the configuration files of c.
func WriteConfig(c Config) error {
	tmplDir, err := filepath.Abs(c.Templates)
	if err != nil {
		return fmt.Errorf("templates: %w", err)
	}
	level := c.LogLevel
	if level == "" {
		level = "warn"
	}
	comsrv := fmt.Sprintf(`redis_url = %q
log_file = %q
log_level = %q
metrics_listen = ""
templates = [%q]
channels = ["channels/*.toml"]

[dtu]
listen = "127.0.0.1:%d"
max_connections = %d
# Every simulated DTU connects from 127.0.0.1.
max_unregistered = %d
max_unregistered_per_ip = 0

[redis]
flush_interval = "1s"
`, c.RedisURL, filepath.Join(c.Dir, "comsrv.log"), level, filepath.Join(tmplDir, "*.toml"), c.DTUPort, c.N+100, c.N+100)
	if c.Frames >= 0 {
		comsrv += fmt.Sprintf("\n[frames]\nkeep = %d\n", c.Frames)
	}
	comsrv += c.ExtraComsrv
	channels := fmt.Sprintf(`[[range]]
first = 1
last = %d
id = "{n}"
registration = "DTU{n}"
template = %q
`, c.N, c.Template)
	if err := os.MkdirAll(filepath.Join(c.Dir, "channels"), 0o755); err != nil {
		return fmt.Errorf("config directory: %w", err)
	}
	points, err := TemplatePoints(tmplDir, c.Template)
	if err != nil {
		return err
	}
	files := map[string]string{
		c.ComsrvConfig(): comsrv,
		filepath.Join(c.Dir, "channels", "n.toml"): channels,
		c.Mappings(): MapRange(1, c.N, points) + c.ExtraMappings,
	}
	for path, text := range files {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return fmt.Errorf("write config: %w", err)
		}
	}
	return nil
}

// MapRange is a [[map_range]] entry mapping each point (id, name) of
// channels first..last to model "meter{n}".
func MapRange(first, last int, points [][2]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[[map_range]]\nfirst = %d\nlast = %d\nchannel = \"{n}\"\nmodel = \"meter{n}\"\npoints = { ", first, last)
	writePoints(&b, points)
	b.WriteString(" }\n")
	return b.String()
}

// Map is a [[map]] entry mapping each point (id, name) of channel to model.
func Map(channel, model string, points [][2]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[[map]]\nchannel = %q\nmodel = %q\npoints = { ", channel, model)
	writePoints(&b, points)
	b.WriteString(" }\n")
	return b.String()
}

func writePoints(b *strings.Builder, points [][2]string) {
	for i, p := range points {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "%q = %q", p[0], p[1])
	}
}

// TemplatePoints returns the (id, name) of each point of the template named
// name in dir: a file whose name (or "name" setting) is name. comsrv itself
// validates the template when it starts.
func TemplatePoints(dir, name string) ([][2]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.toml"))
	if err != nil {
		return nil, fmt.Errorf("templates in %s: %w", dir, err)
	}
	for _, f := range files {
		var t struct {
			Name   string `toml:"name"`
			Points []struct {
				ID   string `toml:"id"`
				Name string `toml:"name"`
			} `toml:"point"`
		}
		if _, err := toml.DecodeFile(f, &t); err != nil {
			return nil, fmt.Errorf("template %s: %w", f, err)
		}
		if t.Name == "" {
			t.Name = strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
		}
		if t.Name != name {
			continue
		}
		points := make([][2]string, 0, len(t.Points))
		for _, p := range t.Points {
			if p.Name == "" {
				p.Name = p.ID
			}
			points = append(points, [2]string{p.ID, p.Name})
		}
		return points, nil
	}
	return nil, fmt.Errorf("template %q not found in %s", name, dir)
}

// Comsrv describes comsrv from bin with the configuration of c; Start it.
func Comsrv(bin string, c Config, extraArgs ...string) *Proc {
	return &Proc{Name: "comsrv", Path: filepath.Join(bin, "comsrv"),
		Args: append([]string{"-config", c.ComsrvConfig()}, extraArgs...), Log: filepath.Join(c.Dir, "comsrv.stderr")}
}

// Dtusim describes dtusim from bin with n transparent devices DTU1..DTUn
// dialling port, heartbeats every 30 s, and extraArgs; Start it.
func Dtusim(bin, dir string, port, n, ramp int, extraArgs ...string) *Proc {
	return &Proc{Name: "dtusim", Path: filepath.Join(bin, "dtusim"),
		Args: append([]string{"-addr", fmt.Sprintf("127.0.0.1:%d", port), "-n", strconv.Itoa(n), "-prefix", "DTU", "-start", "1",
			"-ramp", strconv.Itoa(ramp), "-heartbeat-interval", "30s", "-stats", "0s", "-log-level", "warn"}, extraArgs...),
		Log: filepath.Join(dir, "dtusim.stderr")}
}
