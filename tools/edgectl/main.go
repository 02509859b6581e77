// Command edgectl is the field engineer's tool for a VoltEdge box: it loads
// the Redis Functions library and the point mappings, shows channel status,
// monitors Redis and comsrv, and sends control commands.
//
// Usage:
//
//	edgectl [-redis URL] [-timeout D] COMMAND [ARGS]
//
// Commands:
//
//	lua load [FILE]          load the embedded library (or FILE) with FUNCTION LOAD REPLACE
//	lua status               show the loaded and embedded library versions and functions
//	mappings load FILE.toml  load point mappings and alarm limits [-replace]
//	status [CHANNEL...]      show channel link state and counters [-all] [-json] [-sort]
//	monitor                  one line per interval: Redis memory, clients, ops/s, keys, comsrv stats
//	send MODEL CONTROL VALUE queue a control command, print its id and wait for its outcome [-ttl] [-wait] [-no-wait]
//	reload                   ask comsrv to reload its channel and template files, and print its answer [-wait]
//
// The Redis URL defaults to $VOLTEDGE_REDIS, else redis://127.0.0.1:6379.
// Errors are printed to standard error and exit with status 1; usage errors
// exit with status 2. A control outcome other than ok, and a refused reload,
// are printed to standard output and exit with status 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/redisconn"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// defaultRedis is used when neither -redis nor $VOLTEDGE_REDIS is set.
const defaultRedis = "redis://127.0.0.1:6379"

// envRedis names the environment variable with the default Redis URL.
const envRedis = "VOLTEDGE_REDIS"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// app is what every command needs: where to print, which Redis, the clock.
type app struct {
	stdout, stderr io.Writer
	redisURL       string
	timeout        time.Duration
	now            func() time.Time
	loc            *time.Location
	log            *slog.Logger
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, a *app, args []string) error
}

// commands lists the subcommands in the order usage shows them.
func commands() []command {
	return []command{
		{"lua", "load or inspect the Redis Functions library", runLua},
		{"mappings", "load point mappings and alarm limits from a TOML file", runMappings},
		{"status", "show channel link state and counters", runStatus},
		{"monitor", "print Redis and comsrv figures at an interval", runMonitor},
		{"send", "queue a control command and wait for its outcome", runSend},
		{"reload", "ask comsrv to reload its channel and template files", runReload},
	}
}

// run executes edgectl with args (without the program name) and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{
		stdout: stdout,
		stderr: stderr,
		now:    time.Now,
		loc:    time.Local,
		log:    slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	return a.main(ctx, args)
}

func (a *app) main(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("edgectl", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	a.globalFlags(fs)
	fs.Usage = func() { a.usage(fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	args = fs.Args()
	if len(args) == 0 {
		fmt.Fprintln(a.stderr, "edgectl: no command given")
		a.usage(fs)
		return exitUsage
	}
	if args[0] == "help" {
		a.usage(fs)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return a.exit(c.name, c.run(ctx, a, args[1:]))
		}
	}
	fmt.Fprintf(a.stderr, "edgectl: unknown command %q\n", args[0])
	a.usage(fs)
	return exitUsage
}

// globalFlags defines the flags every command accepts, before or after its name.
func (a *app) globalFlags(fs *flag.FlagSet) {
	t := a.timeout
	if t == 0 {
		t = 30 * time.Second
	}
	fs.Func("redis", "Redis `URL` (default $"+envRedis+", else "+defaultRedis+")", func(s string) error {
		a.redisURL = s
		return nil
	})
	fs.DurationVar(&a.timeout, "timeout", t, "time limit of one-shot commands")
}

func (a *app) usage(fs *flag.FlagSet) {
	w := a.stderr
	fmt.Fprintln(w, "usage: edgectl [-redis URL] [-timeout D] COMMAND [ARGS]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'edgectl COMMAND -h' for a command's usage.\n\nflags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// exit maps a command's error to an exit status, printing it.
func (a *app) exit(name string, err error) int {
	var ue *usageError
	var ne *namedError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsagePrinted):
		return exitUsage
	case errors.Is(err, errReported):
		return exitError
	case errors.As(err, &ue):
		fmt.Fprintf(a.stderr, "edgectl %s: %s\n", ue.cmd, ue.msg)
		ue.fs.Usage()
		return exitUsage
	case errors.As(err, &ne):
		fmt.Fprintf(a.stderr, "edgectl %s: %v\n", ne.name, ne.err)
		return exitError
	default:
		fmt.Fprintf(a.stderr, "edgectl %s: %v\n", name, err)
		return exitError
	}
}

// errUsagePrinted reports a flag error the flag package has already printed with the usage.
var errUsagePrinted = errors.New("usage error")

// errReported is a failure the command has already printed as its result
// (a control outcome other than ok, a refused reload): exit 1, print nothing more.
var errReported = errors.New("failure reported")

// namedError is the failure of a nested command, e.g. "lua load".
type namedError struct {
	name string
	err  error
}

func (e *namedError) Error() string { return e.name + ": " + e.err.Error() }
func (e *namedError) Unwrap() error { return e.err }

// usageError is a wrong invocation; the command's usage is printed after msg.
type usageError struct {
	cmd string
	msg string
	fs  *flag.FlagSet
}

func (e *usageError) Error() string { return e.cmd + ": " + e.msg }

// flags builds the flag set of command name (e.g. "lua load"); synopsis is
// what follows the name in the usage line.
func (a *app) flags(name, synopsis, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("edgectl "+name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	a.globalFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "usage: edgectl %s %s\n\n%s\n\nflags:\n", name, synopsis, summary)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags that may come before, between or after the positional
// arguments, which it returns. Arguments that are negative numbers ("-5")
// are positional; "--" ends the flags.
func (a *app) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if isNumber(args[0]) {
			pos = append(pos, args[0])
			args = args[1:]
			continue
		}
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsagePrinted
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return pos, nil
}

// usageErr builds a usage error for the command of fs.
func usageErr(fs *flag.FlagSet, format string, args ...any) error {
	return &usageError{cmd: strings.TrimPrefix(fs.Name(), "edgectl "), msg: fmt.Sprintf(format, args...), fs: fs}
}

// isNumber reports whether s parses as a number (so "-5" is not a flag).
func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// client connects to the configured Redis.
func (a *app) client() (rueidis.Client, error) {
	url := a.redisURL
	if url == "" {
		url = os.Getenv(envRedis)
	}
	if url == "" {
		url = defaultRedis
	}
	c, err := redisconn.New(url, redisconn.Options{ClientName: "edgectl", BlockingPool: 1})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// oneShot bounds a one-shot command by the -timeout flag.
func (a *app) oneShot(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, a.timeout)
}

// subcommand dispatches "edgectl NAME SUB ...".
func (a *app) subcommand(ctx context.Context, name string, subs []command, args []string) error {
	usage := func() {
		fmt.Fprintf(a.stderr, "usage: edgectl %s COMMAND [ARGS]\n\ncommands:\n", name)
		for _, s := range subs {
			fmt.Fprintf(a.stderr, "  %-8s %s\n", s.name, s.summary)
		}
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		if len(args) == 0 {
			fmt.Fprintf(a.stderr, "edgectl %s: no command given\n", name)
		}
		usage()
		if len(args) == 0 {
			return errUsagePrinted
		}
		return flag.ErrHelp
	}
	for _, s := range subs {
		if s.name == args[0] {
			if err := s.run(ctx, a, args[1:]); err != nil {
				return &namedError{name: name + " " + s.name, err: err}
			}
			return nil
		}
	}
	fmt.Fprintf(a.stderr, "edgectl %s: unknown command %q\n", name, args[0])
	usage()
	return errUsagePrinted
}
