package integration_test

import (
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// How long Caddy may take to start, stop, or answer a command.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 20 * time.Second
	cmdTimeout   = 60 * time.Second
)

// handedOut holds every port freePort returned, so that one test run never
// gets the same port twice.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// fixedPortRange is where freePort picks ports: below the kernel's ephemeral
// range, which it uses for every listener on port 0 (the in-process fake,
// httptest servers) and every outgoing connection. A port picked from the
// ephemeral range and closed again could be given to one of those before
// Caddy binds it ("address already in use").
func fixedPortRange() (lo, hi int) {
	lo, hi = 20000, 32767
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	var elo, ehi int
	if _, err := fmt.Sscan(string(b), &elo, &ehi); err != nil || elo <= 0 {
		return lo, hi
	}
	if elo-1 < hi {
		hi = elo - 1
	}
	if hi-lo < 1000 { // an unusual range: fall back to a wide window below it
		lo = max(1024, hi-10000)
	}
	return lo, hi
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago, that
// the kernel does not hand out on its own (see fixedPortRange), and that no
// other call in this process has returned. It is picked at random, so that
// test runs in parallel processes rarely try the same one.
func freePort(t testing.TB) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	lo, hi := fixedPortRange()
	for range 1000 {
		port := lo + mathrand.IntN(hi-lo+1)
		if handedOut.ports[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // in use
		}
		ln.Close()
		handedOut.ports[port] = true
		return port
	}
	t.Fatalf("finding a free port in %d-%d: none found", lo, hi)
	return 0
}

// Caddy is bin/caddy running as a child process with a generated Caddyfile,
// its HOME and XDG directories inside the test's directory, its stdout and
// stderr appended to files there (one pair for every start), listening only on
// 127.0.0.1.
type Caddy struct {
	t   testing.TB
	Dir string // everything of this Caddy: configs, logs, data, store

	AdminAddr string // 127.0.0.1:PORT of the admin API
	HTTPPort  int    // the site's port
	env       []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	waitErr error
	config  string // the Caddyfile in use
	starts  int
}

// NewCaddy prepares (but does not start) a Caddy in dir with the given ports.
// env adds variables to the process's environment (secrets as {env.VAR}).
func NewCaddy(t testing.TB, dir string, adminPort, httpPort int, env map[string]string) *Caddy {
	t.Helper()
	for _, sub := range []string{"home", "xdg-data", "xdg-config", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	c := &Caddy{
		t:         t,
		Dir:       dir,
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", adminPort),
		HTTPPort:  httpPort,
		env:       caddyEnv(dir, env),
	}
	t.Cleanup(func() {
		if c.Running() {
			c.Stop()
		}
	})
	return c
}

// caddyEnv is the environment of every Caddy command of a test: the test's own,
// with HOME and XDG directories moved into dir so that nothing touches the
// real home directory, plus extra.
func caddyEnv(dir string, extra map[string]string) []string {
	drop := map[string]bool{"HOME": true, "XDG_DATA_HOME": true, "XDG_CONFIG_HOME": true, "XDG_CACHE_HOME": true}
	for k := range extra {
		drop[k] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] && !strings.HasPrefix(k, "AMOCRM_") && !strings.HasPrefix(k, "AMOBRIDGE_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"HOME="+filepath.Join(dir, "home"),
		"XDG_DATA_HOME="+filepath.Join(dir, "xdg-data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "xdg-config"),
		"XDG_CACHE_HOME="+filepath.Join(dir, "home", ".cache"),
	)
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// BaseURL is the site's address.
func (c *Caddy) BaseURL() string { return fmt.Sprintf("http://127.0.0.1:%d", c.HTTPPort) }

// Config returns the Caddyfile in use.
func (c *Caddy) Config() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.config
}

// writeConfig writes a numbered Caddyfile into Dir and returns its path.
func (c *Caddy) writeConfig(caddyfile string) string {
	c.t.Helper()
	c.mu.Lock()
	c.config = caddyfile
	n := c.starts
	c.mu.Unlock()
	path := filepath.Join(c.Dir, fmt.Sprintf("Caddyfile.%d.%d", n, time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// Start runs `caddy run` with caddyfile and waits until the admin API and the
// site's port answer. It fails the test, with Caddy's output, if Caddy exits
// or is not ready in time.
func (c *Caddy) Start(caddyfile string) {
	c.t.Helper()
	if c.Running() {
		c.t.Fatal("Caddy.Start: already running")
	}
	path := c.writeConfig(caddyfile)
	c.mu.Lock()
	c.starts++
	out, err := os.OpenFile(c.StderrPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.mu.Unlock()
		c.t.Fatal(err)
	}
	fmt.Fprintf(out, "\n===== start #%d: %s\n", c.starts, path)
	cmd := exec.Command(caddyBin, "run", "--adapter", "caddyfile", "--config", path)
	cmd.Dir = c.Dir
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		c.mu.Unlock()
		out.Close()
		c.t.Fatalf("starting %s: %v", caddyBin, err)
	}
	done := make(chan struct{})
	c.cmd, c.done, c.waitErr = cmd, done, nil
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		out.Close()
		c.mu.Lock()
		c.waitErr = err
		c.mu.Unlock()
		close(done)
	}()
	c.waitReady(done)
}

// waitReady polls the admin API and then the site's port.
func (c *Caddy) waitReady(done chan struct{}) {
	c.t.Helper()
	deadline := time.Now().Add(startTimeout)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for {
		select {
		case <-done:
			c.t.Fatalf("Caddy exited while starting (%v); its output:\n%s", c.exitErr(), tail(c.Logs(), 60))
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("Caddy was not ready within %v; its output:\n%s", startTimeout, tail(c.Logs(), 60))
		}
		if resp, err := hc.Get("http://" + c.AdminAddr + "/config/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.HTTPPort), time.Second); err == nil {
					conn.Close()
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Caddy) exitErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waitErr
}

// Running reports whether the Caddy process is running.
func (c *Caddy) Running() bool {
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// signal sends sig and waits up to timeout for the process to exit; it reports
// whether it did.
func (c *Caddy) signal(sig syscall.Signal, timeout time.Duration) bool {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if cmd == nil {
		return true
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Stop ends Caddy gracefully (SIGTERM), and with SIGKILL if it does not exit
// in time, which fails the test.
func (c *Caddy) Stop() {
	c.t.Helper()
	if c.signal(syscall.SIGTERM, stopTimeout) {
		return
	}
	c.signal(syscall.SIGKILL, stopTimeout)
	c.t.Errorf("Caddy did not exit within %v of SIGTERM; killed. Its output:\n%s", stopTimeout, tail(c.Logs(), 40))
}

// Kill ends Caddy at once (SIGKILL), as a crash would.
func (c *Caddy) Kill() {
	c.t.Helper()
	if !c.signal(syscall.SIGKILL, stopTimeout) {
		c.t.Fatalf("Caddy did not exit after SIGKILL")
	}
}

// Restart stops Caddy (gracefully, or with kill=true as a crash) and starts
// it again with the same configuration, directories and store.
func (c *Caddy) Restart(kill bool) {
	c.t.Helper()
	if kill {
		c.Kill()
	} else {
		c.Stop()
	}
	c.Start(c.Config())
}

// Command runs `caddy args...` with this Caddy's environment and directory,
// and returns its combined output.
func (c *Caddy) Command(args ...string) (string, error) {
	return runCaddy(c.Dir, c.env, args...)
}

// Reload loads caddyfile into the running Caddy with `caddy reload`.
func (c *Caddy) Reload(caddyfile string) (string, error) {
	c.t.Helper()
	path := c.writeConfig(caddyfile)
	return c.Command("reload", "--adapter", "caddyfile", "--config", path, "--address", c.AdminAddr)
}

// runCaddy runs bin/caddy with args in dir with env, bounded by cmdTimeout.
func runCaddy(dir string, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("caddy %s: no answer within %v", strings.Join(args, " "), cmdTimeout)
	}
	return string(out), err
}

// StderrPath is the file Caddy's stdout and stderr go to.
func (c *Caddy) StderrPath() string { return filepath.Join(c.Dir, "caddy.log") }

// Logs returns everything Caddy has written to stdout and stderr so far.
func (c *Caddy) Logs() string {
	b, err := os.ReadFile(c.StderrPath())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		c.t.Errorf("reading Caddy's output: %v", err)
	}
	return string(b)
}
