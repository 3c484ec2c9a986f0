package integration_test

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Figures of cluster mode for docs/performance.md (issue 11, item 11):
// measurements logged with -v, not timed assertions.

// clCommandStats returns, per command (lower case), how many calls the
// Redis at addr has served: INFO commandstats, without INFO itself.
func clCommandStats(t testing.TB, addr string) map[string]int64 {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("INFO commandstats\r\n")); err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	br := bufio.NewReader(conn)
	head, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		t.Fatalf("INFO commandstats: answer %q, %v", head, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil {
		t.Fatalf("INFO commandstats: answer %q", head)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(body), "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		cmd, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd || cmd == "info" {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				out[cmd], _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return out
}

// clStatsDelta is b - a per command, and the total.
func clStatsDelta(a, b map[string]int64) (map[string]int64, int64) {
	d := map[string]int64{}
	var total int64
	for k, v := range b {
		if x := v - a[k]; x != 0 {
			d[k] = x
			total += x
		}
	}
	return d, total
}

// clFormatCounts prints counts sorted by name.
func clFormatCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// clHistogram is a Prometheus histogram summed over instances.
type clHistogram struct {
	Name       string
	Bounds     []float64 // the buckets' upper bounds, ascending, +Inf last
	Cumulative []float64 // cumulative counts per bound
	Count, Sum float64
}

// ScrapeHistogram reads the histogram name from every running instance's
// /metrics (on its admin address) and sums it.
func (c *Cluster) ScrapeHistogram(name string) clHistogram {
	c.T.Helper()
	h := clHistogram{Name: name}
	byBound := map[float64]float64{}
	for i, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		r := clSend(client, "http://"+n.AdminAddr, http.MethodGet, "/metrics", nil, nil)
		if r.Status != http.StatusOK {
			c.T.Fatalf("instance %d's /metrics: %d %v", i, r.Status, r.Err)
		}
		for _, line := range strings.Split(string(r.Body), "\n") {
			metric, value, ok := strings.Cut(line, " ")
			if !ok || strings.HasPrefix(line, "#") {
				continue
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				continue
			}
			switch {
			case strings.HasPrefix(metric, name+`_bucket{le="`):
				le := strings.TrimSuffix(strings.TrimPrefix(metric, name+`_bucket{le="`), `"}`)
				b, err := strconv.ParseFloat(le, 64)
				if err != nil {
					continue
				}
				byBound[b] += v
			case metric == name+"_count":
				h.Count += v
			case metric == name+"_sum":
				h.Sum += v
			}
		}
	}
	for b := range byBound {
		h.Bounds = append(h.Bounds, b)
	}
	sort.Float64s(h.Bounds)
	for _, b := range h.Bounds {
		h.Cumulative = append(h.Cumulative, byBound[b])
	}
	return h
}

// Quantile is Prometheus's histogram_quantile: linear within the bucket
// holding the q-th observation; and that bucket's upper bound.
func (h clHistogram) Quantile(q float64) (interpolated, bound float64) {
	if h.Count == 0 || len(h.Bounds) == 0 {
		return math.NaN(), math.NaN()
	}
	rank := q * h.Count
	lower, below := 0.0, 0.0
	for i, b := range h.Bounds {
		if h.Cumulative[i] >= rank {
			if math.IsInf(b, 1) {
				return lower, b
			}
			in := h.Cumulative[i] - below
			if in <= 0 {
				return b, b
			}
			return lower + (b-lower)*(rank-below)/in, b
		}
		lower, below = b, h.Cumulative[i]
	}
	return lower, math.Inf(1)
}

func (h clHistogram) String() string {
	if h.Count == 0 {
		return h.Name + ": no observations"
	}
	p50, b50 := h.Quantile(0.5)
	p99, b99 := h.Quantile(0.99)
	var buckets []string
	prev := 0.0
	for i, b := range h.Bounds {
		if n := h.Cumulative[i] - prev; n > 0 {
			buckets = append(buckets, fmt.Sprintf("≤%gs:%g", b, n))
		}
		prev = h.Cumulative[i]
	}
	return fmt.Sprintf("%s: %g observations, mean %.4fs, p50 %.4fs (bucket ≤%gs), p99 %.4fs (bucket ≤%gs); buckets %s",
		h.Name, h.Count, h.Sum/h.Count, p50, b50, p99, b99, strings.Join(buckets, " "))
}

// TestClusterRoundTripFigures counts the Redis commands (INFO commandstats
// on the server) and the round trips the instances measured
// (amobridge_redis_seconds_count) per warm request, with rate_limit 0 and
// with rate_limit 7 (requests paced under the limit, so none waits). The
// background traffic (keeper lease, subscriptions' pings) is measured over
// an idle period as long as the load's and subtracted.
func TestClusterRoundTripFigures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int
		n     int
		gap   time.Duration
	}{
		{"rate_limit 0", 0, 900, 0},
		{"rate_limit 7", 7, 60, 200 * time.Millisecond},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			c := NewCluster(t, ClusterOptions{Extra: []string{fmt.Sprintf("rate_limit %d", tc.limit)}})
			u := c.Users[0]
			for i := range c.Nodes { // warm on every instance
				if r := c.Get(i, u); r.Status != http.StatusOK {
					t.Fatalf("warming instance %d: %d %v %.200s", i, r.Status, r.Err, r.Body)
				}
			}
			time.Sleep(2 * time.Second)
			rtt := func() float64 { return c.ScrapeHistogram("amobridge_redis_seconds").Count }

			// The load first, then an idle period as long.
			s0, r0 := clCommandStats(t, c.Redis.Addr()), rtt()
			start := time.Now()
			for k := range tc.n {
				if r := c.Get(k%len(c.Nodes), u); r.Status != http.StatusOK {
					t.Fatalf("warm request %d: %d %v %.200s", k, r.Status, r.Err, r.Body)
				}
				time.Sleep(tc.gap)
			}
			took := time.Since(start)
			s1, r1 := clCommandStats(t, c.Redis.Addr()), rtt()
			time.Sleep(took)
			s2, r2 := clCommandStats(t, c.Redis.Addr()), rtt()

			load, loadTotal := clStatsDelta(s0, s1)
			idle, idleTotal := clStatsDelta(s1, s2)
			// The scrapes themselves: /metrics makes no Redis call, but the
			// instances' round-trip counters include what the idle period shows.
			perReq := max(0, float64(loadTotal-idleTotal)/float64(tc.n))
			rttPerReq := max(0, ((r1-r0)-(r2-r1))/float64(tc.n))
			if fs := c.Fake.Stats(); fs.ExchangeCalls != 1 || fs.Refreshes != 0 {
				t.Errorf("%d exchange calls, %d refreshes; the requests were not all warm", fs.ExchangeCalls, fs.Refreshes)
			}
			t.Logf("%s, %d warm requests over %d instances in %v: Redis commands %d (%s); idle for as long: %d (%s)",
				tc.name, tc.n, len(c.Nodes), took.Round(time.Millisecond), loadTotal, clFormatCounts(load), idleTotal, clFormatCounts(idle))
			// commandstats counts the commands a script runs (EVALSHA's TIME,
			// GET, SET) as well as the EVALSHA: the round trips are the
			// instances' count.
			t.Logf("%s: %.3f Redis commands per warm request (background subtracted; a script's own commands included); round trips measured by the instances: %.3f per warm request (load %g, idle %g)",
				tc.name, perReq, rttPerReq, r1-r0, r2-r1)
			t.Logf("%s: %s", tc.name, c.ScrapeHistogram("amobridge_redis_seconds"))
		})
	}
}
