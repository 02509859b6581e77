// Package lualib loads the VoltEdge Redis Functions library (scripts/voltedge.lua)
// into Redis and calls its functions, reloading it when Redis lost it.
//
// Redis without persistence forgets its functions on restart, and nothing in
// the client reloads them: Ensure is run at service start and by Caller when
// a call answers "Function not found". A library that is newer than the
// embedded one (loaded by hand on a device) is never replaced by Ensure.
package lualib

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/scripts"
)

// VersionUnknown is Info.Loaded for a loaded library whose code has no
// readable version line.
const VersionUnknown = -1

// Actions reported in Info.Action.
const (
	// ActionLoaded: the library was missing and has been loaded.
	ActionLoaded = "loaded"
	// ActionUpgraded: an older library was replaced by the embedded one.
	ActionUpgraded = "upgraded"
	// ActionReplaced: Load replaced a library that was present.
	ActionReplaced = "replaced"
	// ActionKept: the loaded library has the embedded version.
	ActionKept = "kept"
	// ActionKeptNewer: the loaded library is newer than the embedded one and was kept.
	ActionKeptNewer = "kept-newer"
	// ActionKeptUnknown: the loaded library has no readable version and was kept.
	ActionKeptUnknown = "kept-unknown"
)

// Info describes the library in Redis after an operation.
type Info struct {
	// Name is the library name (scripts.LibraryName).
	Name string
	// Loaded is the version now loaded in Redis: 0 = not loaded (or a
	// library declaring VERSION = 0, which Ensure replaces as older than any
	// release), VersionUnknown = loaded without a readable version.
	Loaded int
	// Previous is the version that was loaded before the operation (same encoding as Loaded).
	Previous int
	// Embedded is the version compiled into this binary.
	Embedded int
	// Action is what was done: one of the Action constants, or "" for Status.
	Action string
}

// Status reports the loaded and embedded versions without changing anything.
func Status(ctx context.Context, c rueidis.Client) (Info, error) {
	info, _, err := status(ctx, c)
	return info, err
}

func status(ctx context.Context, c rueidis.Client) (info Info, found bool, err error) {
	info = Info{Name: scripts.LibraryName, Embedded: scripts.Version()}
	code, found, err := loadedCode(ctx, c)
	if err != nil {
		return info, false, err
	}
	if found {
		info.Loaded = VersionUnknown
		if v, ok := scripts.ParseVersion(code); ok {
			info.Loaded = v
		}
	}
	info.Previous = info.Loaded
	return info, found, nil
}

// Ensure makes sure the library is loaded: it loads it when missing,
// replaces an older version, and keeps an equal, newer or unversioned one.
func Ensure(ctx context.Context, c rueidis.Client) (Info, error) {
	for attempt := 0; ; attempt++ {
		info, found, err := status(ctx, c)
		if err != nil {
			return info, err
		}
		switch {
		case !found:
			err := c.Do(ctx, c.B().FunctionLoad().FunctionCode(scripts.Source()).Build()).Error()
			if err == nil {
				info.Loaded, info.Action = info.Embedded, ActionLoaded
				return info, nil
			}
			if isAlreadyExists(err) && attempt == 0 {
				continue // another process loaded it meanwhile: look again
			}
			return info, fmt.Errorf("load redis functions library %s v%d: %w", info.Name, info.Embedded, err)
		case info.Loaded == VersionUnknown:
			info.Action = ActionKeptUnknown
		case info.Loaded < info.Embedded:
			if err := replace(ctx, c); err != nil {
				return info, fmt.Errorf("upgrade redis functions library %s from v%d to v%d: %w",
					info.Name, info.Loaded, info.Embedded, err)
			}
			info.Loaded, info.Action = info.Embedded, ActionUpgraded
		case info.Loaded == info.Embedded:
			info.Action = ActionKept
		default:
			info.Action = ActionKeptNewer
		}
		return info, nil
	}
}

// Load replaces the library in Redis with the embedded one, whatever version
// is loaded.
func Load(ctx context.Context, c rueidis.Client) (Info, error) {
	info, found, err := status(ctx, c)
	if err != nil {
		return info, err
	}
	if err := replace(ctx, c); err != nil {
		return info, fmt.Errorf("load redis functions library %s v%d: %w", info.Name, info.Embedded, err)
	}
	info.Action = ActionLoaded
	if found {
		info.Action = ActionReplaced
	}
	info.Loaded = info.Embedded
	return info, nil
}

func replace(ctx context.Context, c rueidis.Client) error {
	return c.Do(ctx, c.B().FunctionLoad().Replace().FunctionCode(scripts.Source()).Build()).Error()
}

// loadedCode returns the code of the loaded library, if any.
func loadedCode(ctx context.Context, c rueidis.Client) (code string, found bool, err error) {
	libs, err := c.Do(ctx, c.B().FunctionList().Libraryname(scripts.LibraryName).Withcode().Build()).ToArray()
	if err != nil {
		return "", false, fmt.Errorf("function list %s: %w", scripts.LibraryName, err)
	}
	for i := range libs {
		m, err := libs[i].AsMap()
		if err != nil {
			return "", false, fmt.Errorf("function list %s: entry %d: %w", scripts.LibraryName, i, err)
		}
		name, ok := m["library_name"]
		if !ok {
			continue
		}
		if n, err := name.ToString(); err != nil || n != scripts.LibraryName {
			continue // LIBRARYNAME is a pattern: skip other matches
		}
		codeMsg, ok := m["library_code"]
		if !ok {
			return "", true, nil
		}
		code, err := codeMsg.ToString()
		if err != nil {
			return "", false, fmt.Errorf("function list %s: library_code: %w", scripts.LibraryName, err)
		}
		return code, true, nil
	}
	return "", false, nil
}

// IsFunctionNotFound reports whether err is Redis's reply to FCALL of a
// function that is not loaded ("ERR Function not found").
func IsFunctionNotFound(err error) bool {
	return redisErrContains(err, "Function not found")
}

// isAlreadyExists recognises "ERR Library 'voltedge' already exists".
func isAlreadyExists(err error) bool {
	return redisErrContains(err, "already exists")
}

func redisErrContains(err error, text string) bool {
	var re *rueidis.RedisError
	if !errors.As(err, &re) || re.IsNil() {
		return false
	}
	return strings.Contains(re.Error(), text)
}

// Caller calls the library's functions and reloads the library once when
// Redis answers that a function is not found (Redis restarted without
// persistence, or someone ran FUNCTION DELETE). It is safe for concurrent use.
type Caller struct {
	c   rueidis.Client
	log *slog.Logger
	mu  sync.Mutex // serialises reloads
}

// NewCaller returns a Caller using c; log may be nil (slog.Default()).
func NewCaller(c rueidis.Client, log *slog.Logger) *Caller {
	if log == nil {
		log = slog.Default()
	}
	return &Caller{c: c, log: log}
}

// Call issues FCALL fn 0 args... (see Fcall).
func (k *Caller) Call(ctx context.Context, fn string, args ...string) rueidis.RedisResult {
	return k.Fcall(ctx, fn, args)
}

// Fcall issues FCALL fn 0 args... The arguments are copied into the command,
// so the caller may reuse args once Fcall returns. When the function is not
// found it runs Ensure and retries once; if Ensure fails, the original reply
// is returned and the failure logged.
func (k *Caller) Fcall(ctx context.Context, fn string, args []string) rueidis.RedisResult {
	r := k.c.Do(ctx, k.c.B().Fcall().Function(fn).Numkeys(0).Arg(args...).Build())
	if !IsFunctionNotFound(r.Error()) {
		return r
	}
	if err := k.reload(ctx, fn); err != nil {
		return r
	}
	return k.c.Do(ctx, k.c.B().Fcall().Function(fn).Numkeys(0).Arg(args...).Build())
}

func (k *Caller) reload(ctx context.Context, fn string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	info, err := Ensure(ctx, k.c)
	if err != nil {
		k.log.Error("redis functions library: reload failed", "function", fn, "err", err)
		return err
	}
	level := slog.LevelWarn
	if info.Action == ActionLoaded || info.Action == ActionUpgraded {
		level = slog.LevelInfo
	}
	k.log.Log(ctx, level, "redis functions library: function not found, library checked",
		"function", fn, "library", info.Name, "action", info.Action,
		"loaded", info.Loaded, "previous", info.Previous, "embedded", info.Embedded)
	return nil
}
