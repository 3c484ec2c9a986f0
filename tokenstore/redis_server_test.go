package tokenstore

import (
	"bufio"
	"context"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is Debian's redis-server run by a test: on a free 127.0.0.1
// port, its files in a temporary directory, AOF on (appendonly yes,
// appendfsync everysec: the settings the docs ask for), stopped at the
// end of the test.
type redisServer struct {
	t    testing.TB
	port int
	dir  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// startRedis starts a redis-server for t, or skips t if none is installed
// (fails instead if AMOBRIDGE_REQUIRE_REDIS=1).
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("AMOBRIDGE_REQUIRE_REDIS") == "1" {
			t.Fatalf("redis-server is not installed, and AMOBRIDGE_REQUIRE_REDIS=1: %v", err)
		}
		t.Skip("redis-server is not installed (apt-get install redis-server); set AMOBRIDGE_REQUIRE_REDIS=1 to fail instead")
	}
	r := &redisServer{t: t, dir: t.TempDir()}
	var err error
	for range 5 { // a port free a moment ago may be taken by the time Redis binds it
		r.port = redisFreePort(t)
		if err = r.tryStart(); err == nil {
			t.Cleanup(r.stop)
			return r
		}
	}
	t.Fatalf("starting redis-server: %v", err)
	return nil
}

func (r *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

// start starts the server again (after stop or kill), on the same port and
// directory: it reloads its data from the AOF.
func (r *redisServer) start() {
	r.t.Helper()
	if err := r.tryStart(); err != nil {
		r.t.Fatalf("restarting redis-server: %v", err)
	}
}

func (r *redisServer) tryStart() error {
	cmd := exec.Command("redis-server",
		"--port", fmt.Sprint(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
		"--daemonize", "no", "--logfile", filepath.Join(r.dir, "redis.log"),
		"--databases", "4")
	setPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited at start: %s", r.port, r.logTail())
		default:
		}
		if redisPing(r.addr()) {
			r.mu.Lock()
			r.cmd, r.done = cmd, done
			r.mu.Unlock()
			return nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on port %d not answering after 10 s: %s", r.port, r.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop shuts the server down (SIGTERM: it flushes its AOF) and waits.
func (r *redisServer) stop() { r.signal(syscall.SIGTERM) }

// kill kills the server with SIGKILL (what everysec may lose is lost).
func (r *redisServer) kill() { r.signal(syscall.SIGKILL) }

func (r *redisServer) signal(sig syscall.Signal) {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd, r.done = nil, nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func (r *redisServer) logTail() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], " | ")
}

// client is a raw client on the server, closed at the end of the test.
func (r *redisServer) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.addr(), DisableIdentity: true})
	r.t.Cleanup(func() { c.Close() })
	return c
}

// redisPing reports whether a Redis answers PING at addr.
func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

var redisPorts = struct {
	sync.Mutex
	used map[int]bool
}{used: map[int]bool{}}

// redisFreePort returns a port of 127.0.0.1 that was free a moment ago,
// below the kernel's ephemeral range (which hands out ports on its own to
// outgoing connections: a port picked there could be taken before Redis
// binds it), and not returned before in this process; picked at random,
// so that test processes running at once rarely try the same one. As
// integration_test's freePort.
func redisFreePort(t testing.TB) int {
	t.Helper()
	redisPorts.Lock()
	defer redisPorts.Unlock()
	lo, hi := 20000, 32767
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var elo, ehi int
		if _, err := fmt.Sscan(string(b), &elo, &ehi); err == nil && elo > 0 {
			hi = min(hi, elo-1)
			if hi-lo < 1000 {
				lo = max(1024, hi-10000)
			}
		}
	}
	for range 1000 {
		port := lo + mathrand.IntN(hi-lo+1)
		if redisPorts.used[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		redisPorts.used[port] = true
		return port
	}
	t.Fatalf("no free port in %d-%d", lo, hi)
	return 0
}

// openRedisT opens a Redis store on srv, closed at the end of the test.
func openRedisT(t testing.TB, srv *redisServer, o RedisOptions) *Redis {
	t.Helper()
	o.Addresses = []string{srv.addr()}
	s, err := OpenRedis(o)
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// rawKeys returns every key under prefix, with its raw value (hashes
// flattened as field=value).
func rawKeys(t testing.TB, c *redis.Client, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	iter := c.Scan(ctx, 0, escapeGlob(prefix)+"*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		switch typ := c.Type(ctx, k).Val(); typ {
		case "string":
			out[k] = c.Get(ctx, k).Val()
		case "hash":
			var b strings.Builder
			for f, v := range c.HGetAll(ctx, k).Val() {
				b.WriteString(f + "=" + v + ";")
			}
			out[k] = b.String()
		default:
			t.Fatalf("key %q of unexpected type %s", k, typ)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
