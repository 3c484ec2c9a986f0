package integration_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// caddyMem reads the running Caddy's Go heap (HeapAlloc, from the admin
// API's /debug/vars) and its RSS (from /proc), in bytes.
func caddyMem(t *testing.T, c *Caddy) (heap, rss uint64) {
	t.Helper()
	res, err := http.Get("http://" + c.AdminAddr + "/debug/vars")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var vars struct {
		Memstats struct{ HeapAlloc uint64 } `json:"memstats"`
	}
	if err := json.NewDecoder(res.Body).Decode(&vars); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	pid := c.cmd.Process.Pid
	c.mu.Unlock()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			rss = kb << 10
		}
	}
	return vars.Memstats.HeapAlloc, rss
}

// TestSlowBodiesBoundedMemory: 200 connections declare a form body of
// max_body and send a few bytes of it, then stall. Caddy's heap and RSS
// grow with the bytes received, not with the sizes declared, and every
// connection is answered 408 and closed after body_timeout.
func TestSlowBodiesBoundedMemory(t *testing.T) {
	needCaddy(t)
	e := NewEnv(t, EnvOptions{Site: func(s *SiteConfig) {
		s.Debug = false
		s.Extra = "rate_limit 0\n\t\tbody_timeout 3s"
	}})
	heap0, rss0 := caddyMem(t, e.Caddy)
	const n = 200
	var wg sync.WaitGroup
	type result struct {
		status int
		closed bool
		after  time.Duration
		err    error
	}
	results := make([]result, n)
	start := time.Now()
	ready := make(chan struct{}, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.Caddy.HTTPPort))
			if err != nil {
				results[i].err = err
				ready <- struct{}{}
				return
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST /api/v2/leads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\nUSER_LOGIN=user%%40example.com&name=", 10<<20)
			ready <- struct{}{}
			_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(conn)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				results[i].err = err
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			results[i].status, results[i].after = res.StatusCode, time.Since(start)
			_, err = br.ReadByte() // the server closes the connection
			results[i].closed = err != nil
		}()
	}
	for range n {
		<-ready
	}
	time.Sleep(1500 * time.Millisecond) // all stalled, well within body_timeout
	heap1, rss1 := caddyMem(t, e.Caddy)
	wg.Wait()
	t.Logf("%d stalled bodies declaring 10 MiB: heap %d → %d KiB, RSS %d → %d KiB", n, heap0>>10, heap1>>10, rss0>>10, rss1>>10)
	if grow := int64(heap1) - int64(heap0); grow > 50<<20 {
		t.Errorf("the Go heap grew by %d MiB with %d stalled connections; want < 50 MiB", grow>>20, n)
	}
	if grow := int64(rss1) - int64(rss0); grow > 50<<20 {
		t.Errorf("RSS grew by %d MiB with %d stalled connections; want < 50 MiB", grow>>20, n)
	}
	statuses := map[int]int{}
	for i, r := range results {
		if r.err != nil {
			t.Errorf("connection %d: %v", i, r.err)
			continue
		}
		statuses[r.status]++
		if r.status != http.StatusRequestTimeout || !r.closed || r.after < 3*time.Second || r.after > 10*time.Second {
			t.Errorf("connection %d: %d after %v, closed %v; want 408 after about 3 s, then closed", i, r.status, r.after.Round(time.Millisecond), r.closed)
			if t.Failed() && i > 5 {
				break
			}
		}
	}
	t.Logf("answers: %v", statuses)
	if st := e.Fake.Stats(); st.APIRequests != 0 || st.ExchangeCalls != 0 {
		t.Errorf("amoCRM was called %d times (exchanges %d) for bodies that never arrived", st.APIRequests, st.ExchangeCalls)
	}
}
