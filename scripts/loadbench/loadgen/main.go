// Command loadgen sends legacy requests for many users to a Caddy with
// amocrm_auth and reports throughput and latency: the scale benchmark's load
// generator (wrk cannot easily walk 100,000 distinct users exactly once).
//
//	loadgen -url http://127.0.0.1:18081 -users 100000 -mode seq -c 16
//	loadgen -url http://127.0.0.1:18081 -users 100000 -mode random -c 16 -d 15s
//
// seq sends one request per user, users 0..N-1 in order (each user's first
// request: its token is not in the store's memory cache yet); random sends
// requests for random users for -d. Loopback addresses only.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amobridge/amobridge/scripts/loadbench/lbusers"
)

func main() {
	base := flag.String("url", "", "Caddy's address, http://127.0.0.1:PORT")
	path := flag.String("path", "/api/v2/leads?limit_rows=50", "request path and query; the credentials are appended")
	users := flag.Int("users", 1, "how many users exist (0..users-1)")
	mode := flag.String("mode", "random", "seq: every user once, in order; random: random users for -d")
	conns := flag.Int("c", 16, "concurrent connections")
	dur := flag.Duration("d", 10*time.Second, "duration of a random run")
	flag.Parse()
	u, err := url.Parse(*base)
	if err != nil || u.Scheme != "http" || (u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost") {
		log.Fatalf("loadgen: -url must be http://127.0.0.1:PORT")
	}
	if *mode != "seq" && *mode != "random" {
		log.Fatalf("loadgen: -mode seq or random")
	}
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, DisableCompression: true},
	}
	sep := "?"
	if slices.Contains([]byte(*path), '?') {
		sep = "&"
	}
	var next atomic.Int64
	var errs, non200 atomic.Int64
	deadline := time.Now().Add(*dur)
	lat := make([][]time.Duration, *conns)
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < *conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
			for {
				var i int
				if *mode == "seq" {
					i = int(next.Add(1)) - 1
					if i >= *users {
						return
					}
				} else {
					if time.Now().After(deadline) {
						return
					}
					i = rng.IntN(*users)
				}
				t0 := time.Now()
				resp, err := client.Get(*base + *path + sep + lbusers.Query(i))
				if err != nil {
					errs.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat[c] = append(lat[c], time.Since(t0))
				if resp.StatusCode != http.StatusOK {
					non200.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	q := func(p float64) string {
		if len(all) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fms", float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds())/1000)
	}
	fmt.Printf("mode=%s users=%d requests=%d errors=%d non200=%d elapsed=%v rps=%.0f p50=%s p90=%s p99=%s p99.9=%s max=%s\n",
		*mode, *users, len(all), errs.Load(), non200.Load(), elapsed.Round(time.Millisecond),
		float64(len(all))/elapsed.Seconds(), q(.50), q(.90), q(.99), q(.999), q(1))
	if errs.Load() > 0 || non200.Load() > 0 {
		os.Exit(1)
	}
}
