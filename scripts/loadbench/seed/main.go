// Command seed fills a token store directory with users for the load and
// scale benchmarks, through tokenstore's own API (so the key hashes use the
// store's secret, as Caddy will): user i is login user<i>@example.com with
// API key lbusers.Key(i), holding a token valid for a year. It prints how long the
// writes took.
//
//	go run ./scripts/loadbench/seed -store /tmp/lb/store -users 100000 [-key HEX]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/amobridge/amobridge/scripts/loadbench/lbusers"
	"github.com/amobridge/amobridge/tokenstore"
)

func main() {
	dir := flag.String("store", "", "token store directory (created)")
	users := flag.Int("users", 1, "how many users")
	account := flag.String("account", "acme", "the account (subdomain)")
	encKey := flag.String("key", "", "encryption key (hex or base64), as Caddy's store encryption_key")
	workers := flag.Int("workers", 64, "concurrent writers (each Put is synced)")
	tableMemory := flag.String("table-memory", "", "the store's table_memory while seeding (e.g. 256MiB, or off); default: the store's (256MiB)")
	flag.Parse()
	if *dir == "" {
		log.Fatal("seed: -store is required")
	}
	o := tokenstore.Options{Path: *dir}
	if *tableMemory == "off" {
		o.TableMemory = -1
	} else if *tableMemory != "" {
		n, err := humanize.ParseBytes(*tableMemory)
		if err != nil {
			log.Fatalf("seed: -table-memory: %v", err)
		}
		o.TableMemory = int64(n)
	}
	if *encKey != "" {
		k, err := tokenstore.ParseEncryptionKey(*encKey)
		if err != nil {
			log.Fatalf("seed: -key: %v", err)
		}
		o.EncryptionKey = k
	}
	start := time.Now()
	s, err := tokenstore.Open(o)
	if err != nil {
		log.Fatalf("seed: %v", err)
	}
	now := time.Now()
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *users {
					return
				}
				access, refresh := lbusers.Tokens(i, now)
				t := &tokenstore.Token{
					Account: *account, Login: lbusers.Login(i), KeyHash: s.HashKey(lbusers.Key(i)),
					AccessToken: access, RefreshToken: refresh,
					// LastUsed as the callback stores a new pair: Sweep rewrites a
					// token's last use only an hour or more after it.
					Expiry: now.Add(365 * 24 * time.Hour), IssuedAt: now, LastUsed: now,
				}
				if err := s.Put(ctx, t); err != nil {
					log.Fatalf("seed: user %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		log.Fatalf("seed: close: %v", err)
	}
	fmt.Fprintf(os.Stdout, "seeded %d users into %s in %v\n", *users, *dir, time.Since(start).Round(time.Millisecond))
}
