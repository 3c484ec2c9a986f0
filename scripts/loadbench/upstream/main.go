// Command upstream is the load benchmark's stand-in for amoCRM: it answers
// every request with 200 and a small JSON body, as fast as it can, on
// 127.0.0.1. It checks nothing but the presence of a Bearer token (401
// without one), so that a proxy that forgot to set it is noticed.
//
//	go run ./scripts/loadbench/upstream -addr 127.0.0.1:18080
package main

import (
	"flag"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"
)

var body = []byte(`{"_embedded":{"leads":[{"id":1,"name":"Deal","price":100}]},"_page":1}` + "\n")

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "listen address (loopback only)")
	flag.Parse()
	if !strings.HasPrefix(*addr, "127.0.0.1:") && !strings.HasPrefix(*addr, "localhost:") {
		log.Fatalf("upstream: listen on 127.0.0.1 only, not %s", *addr)
	}
	length := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header()["Content-Type"] = []string{"application/json"}
		w.Header()["Content-Length"] = []string{length}
		_, _ = w.Write(body)
	})
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	log.Printf("upstream: listening on %s", *addr)
	log.Fatal(srv.ListenAndServe())
}
