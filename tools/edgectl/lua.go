package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/scripts"
)

// maxLuaFile bounds the size of a library file given to "lua load FILE".
const maxLuaFile = 4 << 20

func runLua(ctx context.Context, a *app, args []string) error {
	return a.subcommand(ctx, "lua", []command{
		{"load", "load the embedded library, or FILE, with FUNCTION LOAD REPLACE", runLuaLoad},
		{"status", "show the loaded and embedded library versions and functions", runLuaStatus},
	}, args)
}

func runLuaLoad(ctx context.Context, a *app, args []string) error {
	fs := a.flags("lua load", "[FILE]",
		"Loads the library embedded in edgectl into Redis, replacing whatever version is loaded.\n"+
			"With FILE, loads that .lua file instead (a library with a \"#!lua name=...\" first line).")
	pos, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usageErr(fs, "want at most one FILE, got %d arguments", len(pos))
	}
	var code string
	if len(pos) == 1 {
		if code, err = readLuaFile(pos[0]); err != nil {
			return err
		}
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := a.oneShot(ctx)
	defer cancel()
	if len(pos) == 0 {
		info, err := lualib.Load(ctx, c)
		if err != nil {
			return err
		}
		if info.Previous != 0 {
			fmt.Fprintf(a.stdout, "library %s: replaced %s with v%d (embedded)\n", info.Name, versionText(info.Previous), info.Loaded)
		} else {
			fmt.Fprintf(a.stdout, "library %s: loaded v%d (embedded)\n", info.Name, info.Loaded)
		}
		return nil
	}
	return loadLuaFile(ctx, a, c, pos[0], code)
}

// readLuaFile reads a library file, bounded in size.
func readLuaFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read library file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxLuaFile+1))
	if err != nil {
		return "", fmt.Errorf("read library file %s: %w", path, err)
	}
	if len(b) > maxLuaFile {
		return "", fmt.Errorf("library file %s is larger than %d bytes", path, maxLuaFile)
	}
	if !strings.HasPrefix(string(b), "#!lua") {
		return "", fmt.Errorf("library file %s does not start with a \"#!lua name=...\" line", path)
	}
	return string(b), nil
}

func loadLuaFile(ctx context.Context, a *app, c rueidis.Client, path, code string) error {
	before, err := lualib.Status(ctx, c)
	if err != nil {
		return err
	}
	name, err := c.Do(ctx, c.B().FunctionLoad().Replace().FunctionCode(code).Build()).ToString()
	if err != nil {
		return fmt.Errorf("function load %s: %w", path, err)
	}
	version := "no version line"
	if v, ok := scripts.ParseVersion(code); ok {
		version = fmt.Sprintf("v%d", v)
	}
	fmt.Fprintf(a.stdout, "library %s: loaded %s from %s\n", name, version, path)
	if name != scripts.LibraryName {
		fmt.Fprintf(a.stderr, "edgectl lua load: note: library name %q is not %q, which the services call\n", name, scripts.LibraryName)
		return nil
	}
	if before.Previous != 0 {
		fmt.Fprintf(a.stdout, "replaced %s; embedded is v%d\n", versionText(before.Previous), before.Embedded)
	}
	return nil
}

func runLuaStatus(ctx context.Context, a *app, args []string) error {
	fs := a.flags("lua status", "", "Shows the library loaded in Redis, the version embedded in edgectl and the library's functions.")
	pos, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := a.oneShot(ctx)
	defer cancel()
	info, err := lualib.Status(ctx, c)
	if err != nil {
		return err
	}
	fns, err := libraryFunctions(ctx, c, info.Name)
	if err != nil {
		return err
	}
	w := a.stdout
	fmt.Fprintf(w, "library:   %s\n", info.Name)
	loaded := versionText(info.Loaded)
	switch {
	case info.Loaded == 0:
		loaded += " (run: edgectl lua load)"
	case info.Loaded > 0 && info.Loaded < info.Embedded:
		loaded += " (older than embedded; services upgrade it at start, or run: edgectl lua load)"
	case info.Loaded > info.Embedded:
		loaded += " (newer than embedded; kept)"
	}
	fmt.Fprintf(w, "loaded:    %s\n", loaded)
	fmt.Fprintf(w, "embedded:  v%d\n", info.Embedded)
	if len(fns) == 0 {
		fmt.Fprintf(w, "functions: -\n")
	} else {
		fmt.Fprintf(w, "functions: %s\n", strings.Join(fns, ", "))
	}
	return nil
}

// versionText renders an lualib.Info version.
func versionText(v int) string {
	switch v {
	case 0:
		return "not loaded"
	case lualib.VersionUnknown:
		return "unknown version"
	}
	return fmt.Sprintf("v%d", v)
}

// libraryFunctions lists the function names of the loaded library, sorted.
func libraryFunctions(ctx context.Context, c rueidis.Client, name string) ([]string, error) {
	libs, err := c.Do(ctx, c.B().FunctionList().Libraryname(name).Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("function list %s: %w", name, err)
	}
	var out []string
	for i := range libs {
		m, err := libs[i].AsMap()
		if err != nil {
			return nil, fmt.Errorf("function list %s: %w", name, err)
		}
		lib, fnsMsg := m["library_name"], m["functions"]
		if n, err := lib.ToString(); err != nil || n != name {
			continue // the name is a pattern: skip other libraries
		}
		fns, err := fnsMsg.ToArray()
		if err != nil {
			return nil, fmt.Errorf("function list %s: functions: %w", name, err)
		}
		for j := range fns {
			f, err := fns[j].AsMap()
			if err != nil {
				return nil, fmt.Errorf("function list %s: function %d: %w", name, j, err)
			}
			nameMsg := f["name"]
			fn, err := nameMsg.ToString()
			if err != nil {
				return nil, fmt.Errorf("function list %s: function %d name: %w", name, j, err)
			}
			out = append(out, fn)
		}
	}
	slices.Sort(out)
	return out, nil
}
