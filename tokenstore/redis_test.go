package tokenstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisEngine runs the conformance suite on srv: every open is a fresh
// prefix (an empty store); a peer is a second OpenRedis with the same
// prefix and key, as another instance of the cluster.
func redisEngine(srv *redisServer, key []byte) engine {
	var n atomic.Int32
	return engine{
		open: func(t *testing.T) Store {
			return openRedisT(t, srv, RedisOptions{KeyPrefix: fmt.Sprintf("conf%d:", n.Add(1)), EncryptionKey: key})
		},
		peer: func(t *testing.T, s Store) Store {
			return openRedisT(t, srv, RedisOptions{KeyPrefix: s.(*Redis).prefix, EncryptionKey: key})
		},
	}
}

func TestConformanceRedis(t *testing.T) {
	srv := startRedis(t)
	runConformance(t, redisEngine(srv, nil))
}

func TestConformanceRedisEncrypted(t *testing.T) {
	srv := startRedis(t)
	runConformance(t, redisEngine(srv, bytes.Repeat([]byte{7}, 32)))
}

func TestRedisFingerprintClientID(t *testing.T) {
	srv := startRedis(t)
	a := openRedisT(t, srv, RedisOptions{})
	if err := a.Claim("client-a"); err != nil {
		t.Fatal(err)
	}
	if err := a.Claim("client-a"); err != nil {
		t.Fatalf("claiming again with the same settings: %v", err)
	}
	b := openRedisT(t, srv, RedisOptions{}) // another instance, same prefix
	if err := b.Claim("client-a"); err != nil {
		t.Fatalf("a second instance with the same settings: %v", err)
	}
	err := b.Claim("client-b")
	if !errors.Is(err, ErrOwner) {
		t.Fatalf("another client_id: %v; want ErrOwner", err)
	}
	for _, want := range []string{"client_id", `"client-a"`, `"client-b"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %s", err, want)
		}
	}
	// Another prefix is another store: any client_id.
	c := openRedisT(t, srv, RedisOptions{KeyPrefix: "other:"})
	if err := c.Claim("client-b"); err != nil {
		t.Fatalf("another prefix: %v", err)
	}
}

func TestRedisFingerprintEncryptionKey(t *testing.T) {
	srv := startRedis(t)
	k1 := bytes.Repeat([]byte{1}, 32)
	k2 := bytes.Repeat([]byte{2}, 32)
	a := openRedisT(t, srv, RedisOptions{KeyPrefix: "enc:", EncryptionKey: k1})
	if err := a.Claim("client-a"); err != nil {
		t.Fatal(err)
	}
	secretShown := func(err error, key []byte) bool {
		msg := err.Error()
		return strings.Contains(msg, hex.EncodeToString(key)) ||
			strings.Contains(msg, base64.StdEncoding.EncodeToString(key)) ||
			strings.Contains(msg, a.keyCheck) || strings.Contains(msg, string(key))
	}
	for _, tc := range []struct {
		name string
		key  []byte
		want string
	}{
		{"another key", k2, "encryption_key differs"},
		{"no key", nil, "has no encryption_key"},
	} {
		_, err := OpenRedis(RedisOptions{Addresses: []string{srv.addr()}, KeyPrefix: "enc:", EncryptionKey: tc.key})
		if !errors.Is(err, ErrEncryptionKey) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want ErrEncryptionKey saying %q", tc.name, err, tc.want)
		} else if secretShown(err, k1) || tc.key != nil && secretShown(err, tc.key) {
			t.Errorf("%s: the error shows a key: %v", tc.name, err)
		}
	}
	// A plain cluster refuses an instance with a key.
	p := openRedisT(t, srv, RedisOptions{KeyPrefix: "plain:"})
	if err := p.Claim("client-a"); err != nil {
		t.Fatal(err)
	}
	_, err := OpenRedis(RedisOptions{Addresses: []string{srv.addr()}, KeyPrefix: "plain:", EncryptionKey: k1})
	if !errors.Is(err, ErrEncryptionKey) || !strings.Contains(err.Error(), "encryption_key") {
		t.Errorf("a key for a plain cluster: %v; want ErrEncryptionKey naming encryption_key", err)
	}
	// Before any Claim (no fingerprint yet) the sealed secret tells.
	q := openRedisT(t, srv, RedisOptions{KeyPrefix: "early:", EncryptionKey: k1})
	_ = q
	_, err = OpenRedis(RedisOptions{Addresses: []string{srv.addr()}, KeyPrefix: "early:", EncryptionKey: k2})
	if !errors.Is(err, ErrEncryptionKey) || secretShown(err, k2) {
		t.Errorf("another key before any Claim: %v; want ErrEncryptionKey", err)
	}
}

func TestRedisPrefixesIndependent(t *testing.T) {
	srv := startRedis(t)
	a := openRedisT(t, srv, RedisOptions{KeyPrefix: "one:"})
	b := openRedisT(t, srv, RedisOptions{KeyPrefix: "two:"})
	if err := a.Claim("client-a"); err != nil {
		t.Fatal(err)
	}
	if err := b.Claim("client-b"); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(bg, testToken("acme", "u")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(bg, "acme", "u"); !errors.Is(err, ErrNotFound) {
		t.Errorf("another prefix sees the token: %v", err)
	}
	n := 0
	b.List(bg, func(*Token) error { n++; return nil })
	if n != 0 {
		t.Errorf("another prefix lists %d tokens", n)
	}
	if bytes.Equal(a.HashKey("k"), b.HashKey("k")) {
		t.Error("two prefixes share a key-hash secret")
	}
	ua, err := a.Lock(bg, "l")
	if err != nil {
		t.Fatal(err)
	}
	defer ua()
	ctx, cancel := context.WithTimeout(bg, time.Second)
	defer cancel()
	ub, err := b.Lock(ctx, "l")
	if err != nil {
		t.Fatalf("a lock of the same name under another prefix: %v", err)
	}
	ub()
	if ok, err := b.Lease(bg, "keeper", time.Minute); !ok || err != nil {
		t.Errorf("the keeper lease of another prefix: %v, %v", ok, err)
	}
	if ok, err := a.Lease(bg, "keeper", time.Minute); !ok || err != nil {
		t.Errorf("the keeper lease of the first prefix: %v, %v", ok, err)
	}
}

// TestRedisEncryption: with an encryption key, no value in Redis holds a
// token, a key hash, the key-hash secret or a login in plain, nor does a key
// name or an event.
func TestRedisEncryption(t *testing.T) {
	srv := startRedis(t)
	key := bytes.Repeat([]byte{9}, 16)
	s := openRedisT(t, srv, RedisOptions{KeyPrefix: "sealed:", EncryptionKey: key})
	raw := srv.client()
	ps := raw.Subscribe(bg, s.channel)
	defer ps.Close()
	if _, err := ps.Receive(bg); err != nil {
		t.Fatal(err)
	}
	tok := realisticToken(rand.New(rand.NewPCG(3, 4)), "acme", "secret.login@example.com")
	kh := s.HashKey("the-api-key")
	tok.KeyHash = kh
	if err := s.Put(bg, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(bg, "acme", tok.Login, func(t *Token) bool { t.LastUsed = time.Now(); return true }); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSession(bg, "session-id-123", Session{Account: "acme", Login: tok.Login, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPending(bg, Pending{State: "state-456", Account: "acme", Login: tok.Login, BaseURL: "https://acme.amocrm.ru",
		KeyHash: kh, Created: time.Now(), Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ClaimAttempt(bg, Attempt{Account: "acme", Login: tok.Login, KeyHash: kh}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Claim("client-a"); err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{
		"access token": []byte(tok.AccessToken[:40]), "refresh token": []byte(tok.RefreshToken[:40]),
		"key hash": kh[:12], "key-hash secret": s.secret[:12], "login": []byte("secret.login"),
		"session id": []byte("session-id-123"), "state": []byte("state-456"), "encryption key": key,
	}
	keys := rawKeys(t, raw, "sealed:")
	if len(keys) < 6 {
		t.Fatalf("only %d keys in Redis: %v", len(keys), slices.Collect(mapKeys(keys)))
	}
	for k, v := range keys {
		for what, sec := range secrets {
			if bytes.Contains([]byte(v), sec) || bytes.Contains([]byte(k), sec) {
				t.Errorf("%s in plain under %q", what, k)
			}
		}
	}
	for range 2 { // the Put's and the Update's events
		m, err := ps.ReceiveMessage(bg)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(m.Payload, "secret.login") {
			t.Errorf("an event shows the login: %q", m.Payload)
		}
	}
	// And everything reads back.
	s2 := openRedisT(t, srv, RedisOptions{KeyPrefix: "sealed:", EncryptionKey: key})
	got, err := s2.Get(bg, "acme", tok.Login)
	if err != nil || got.AccessToken != tok.AccessToken || !bytes.Equal(got.KeyHash, kh) {
		t.Fatalf("Get on another instance: %v", err)
	}
	if p, err := s2.TakePending(bg, "state-456"); err != nil || !bytes.Equal(p.KeyHash, kh) {
		t.Fatalf("TakePending: %+v, %v", p, err)
	}
	if a, err := s2.GetAttempt(bg, "acme", tok.Login); err != nil || !bytes.Equal(a.KeyHash, kh) || a.At.IsZero() {
		t.Fatalf("GetAttempt: %+v, %v", a, err)
	}
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestRedisDown: with Redis stopped, a cached user is served; a miss and
// every write fail with ErrUnavailable. Once Redis is back (from its AOF)
// the store reconnects by itself, the cache is dropped (re-checked) and
// subscribers are told so, and events flow again within 5 s.
func TestRedisDown(t *testing.T) {
	srv := startRedis(t)
	s := openRedisT(t, srv, RedisOptions{})
	p := openRedisT(t, srv, RedisOptions{})
	tok := testToken("acme", "warm")
	if err := p.Put(bg, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(bg, "acme", "warm"); err != nil {
		t.Fatal(err)
	}
	if !s.cache.cached(ukey{"acme", "warm"}) {
		t.Fatal("a token read from Redis is not cached")
	}
	resync := make(chan struct{}, 16)
	events := make(chan string, 64)
	defer s.Subscribe(func(account, login string) {
		if account == "" {
			resync <- struct{}{}
		} else {
			events <- login
		}
	})()

	srv.stop()
	start := time.Now()
	for i := range 50 {
		got, err := s.Get(bg, "acme", "warm")
		if err != nil || !sameToken(got, tok) {
			t.Fatalf("Get %d of a cached user with Redis down: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond) // let the listener notice
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cached Gets took %v with Redis down", d)
	}
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	checkUnavailable := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s with Redis down: %v; want ErrUnavailable", what, err)
		}
	}
	t0 := time.Now()
	_, err := s.Get(ctx, "acme", "cold")
	checkUnavailable("a cache miss", err)
	t.Logf("a miss with Redis down fails in %v", time.Since(t0))
	checkUnavailable("Put", s.Put(ctx, testToken("acme", "cold")))
	checkUnavailable("Delete", s.Delete(ctx, "acme", "warm"))
	_, err = s.Update(ctx, "acme", "warm", func(*Token) bool { return true })
	checkUnavailable("Update", err)
	_, _, err = s.ClaimAttempt(ctx, Attempt{Account: "acme", Login: "warm"}, time.Minute)
	checkUnavailable("ClaimAttempt", err)
	_, err = s.GetSession(ctx, "sid")
	checkUnavailable("GetSession", err)
	_, err = s.TakePending(ctx, "state")
	checkUnavailable("TakePending", err)
	_, err = s.Lock(ctx, "l")
	checkUnavailable("Lock", err)
	_, _, err = s.Reserve(ctx, "q", time.Second, time.Second)
	checkUnavailable("Reserve", err)
	if _, err := s.Get(bg, "acme", "warm"); err != nil {
		t.Fatalf("the cached user after failed writes: %v", err)
	}

	srv.start()
	back := time.Now()
	select {
	case <-resync:
		t.Logf("resubscribed %v after Redis came back", time.Since(back))
	case <-time.After(5 * time.Second):
		t.Fatal("no resync callback within 5 s of Redis's return")
	}
	// The pair written before the stop survived it (AOF), and the
	// cache was dropped: this Get reads Redis.
	if s.cache.cached(ukey{"acme", "warm"}) {
		t.Error("the cache was not dropped after the reconnect")
	}
	if got, err := s.Get(bg, "acme", "warm"); err != nil || !sameToken(got, tok) {
		t.Fatalf("Get after Redis's return: %v", err)
	}
	// Events flow again: another instance's write reaches s.
	newer := testToken("acme", "warm")
	newer.AccessToken = "after-restart"
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := p.Put(bg, newer)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Put on the other instance 5 s after Redis's return: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, "the other instance's write after the restart", func() bool {
		got, err := s.Get(bg, "acme", "warm")
		return err == nil && got.AccessToken == "after-restart"
	})
	t.Logf("full service %v after Redis's return", time.Since(back))
	if d := time.Since(back); d > 5*time.Second {
		t.Errorf("full service took %v after Redis's return; want within 5 s", d)
	}
}

// TestRedisResubscribeRechecks: an event lost while the subscription was
// broken (here: a write that sends none) is made up for by the
// resubscription, which drops the cache.
func TestRedisResubscribeRechecks(t *testing.T) {
	srv := startRedis(t)
	s := openRedisT(t, srv, RedisOptions{})
	raw := srv.client()
	tok := testToken("acme", "u")
	if err := s.Put(bg, tok); err != nil {
		t.Fatal(err)
	}
	// Another instance's write whose event is lost.
	lost := cloneToken(tok)
	lost.AccessToken = "lost-event"
	tk, _ := s.tokenKeys("acme", "u")
	if err := raw.Set(bg, tk, s.seal(tk, encodeToken(lost)), 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(bg, "acme", "u"); got.AccessToken != tok.AccessToken {
		t.Fatal("the cache was bypassed")
	}
	resync := make(chan struct{}, 4)
	defer s.Subscribe(func(account, _ string) {
		if account == "" {
			resync <- struct{}{}
		}
	})()
	if err := raw.ClientKillByFilter(bg, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-resync:
	case <-time.After(5 * time.Second):
		t.Fatal("no resync within 5 s of the subscription's loss")
	}
	if got, err := s.Get(bg, "acme", "u"); err != nil || got.AccessToken != "lost-event" {
		t.Fatalf("after the resubscription: %v, %v; want the pair whose event was lost", got, err)
	}
}

// TestRedisStaleEvent: an event older than what the cache holds changes
// nothing: neither a newer pair nor a delete is undone.
func TestRedisStaleEvent(t *testing.T) {
	srv := startRedis(t)
	s := openRedisT(t, srv, RedisOptions{})
	p := openRedisT(t, srv, RedisOptions{})
	raw := srv.client()
	for i := 1; i <= 3; i++ {
		tok := testToken("acme", "u")
		tok.AccessToken = "a" + strconv.Itoa(i)
		if err := p.Put(bg, tok); err != nil {
			t.Fatal(err)
		}
	}
	k := ukey{"acme", "u"}
	waitFor(t, "the third pair, cached", func() bool {
		got, err := s.Get(bg, "acme", "u")
		return err == nil && got.AccessToken == "a3" && s.cache.cached(k)
	})
	seen := make(chan struct{}, 4)
	defer s.Subscribe(func(string, string) { seen <- struct{}{} })()
	if err := raw.Publish(bg, s.channel, s.event(2, "acme", "u")).Err(); err != nil {
		t.Fatal(err)
	}
	<-seen
	if !s.cache.cached(k) {
		t.Error("a stale event dropped the cached pair")
	}
	if got, _ := s.Get(bg, "acme", "u"); got.AccessToken != "a3" {
		t.Errorf("after a stale event: %q; want a3", got.AccessToken)
	}
	// After a delete (version 4), a late event of version 3 does not bring the pair back.
	if err := p.Delete(bg, "acme", "u"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delete", func() bool {
		_, err := s.Get(bg, "acme", "u")
		return errors.Is(err, ErrNotFound)
	})
	if err := raw.Publish(bg, s.channel, s.event(3, "acme", "u")).Err(); err != nil {
		t.Fatal(err)
	}
	<-seen
	<-seen
	if _, err := s.Get(bg, "acme", "u"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after a late event of the deleted pair: %v; want ErrNotFound", err)
	}
	if s.cache.stripe(k).m[k].v != 4 {
		t.Errorf("the known version is %d after a late event; want 4", s.cache.stripe(k).m[k].v)
	}
	// A forged event that does not decrypt (other key) is ignored.
	if err := raw.Publish(bg, s.channel, "99:garbage").Err(); err != nil {
		t.Fatal(err)
	}
}

// TestRedisCacheVersions: the cache's rules on versions and epochs.
func TestRedisCacheVersions(t *testing.T) {
	var rc redisCache
	rc.init(100)
	rc.subscribed()
	k := ukey{"acme", "u"}
	old, cur := testToken("acme", "u"), testToken("acme", "u")
	old.AccessToken = "old"

	// A read overtaken by a newer event is answered but not cached.
	ep := rc.begin()
	rc.event(k, 5)
	if got := rc.fill(k, old, 4, ep); got.AccessToken != "old" {
		t.Fatal("fill must answer what it read")
	}
	if _, hit, _ := rc.get(k); hit {
		t.Error("a read older than a known event was cached")
	}
	// A write overtaken by a newer event is forgotten.
	rc.wrote(k, old, 4, rc.begin())
	if _, hit, _ := rc.get(k); hit {
		t.Error("a write older than a known event was cached")
	}
	// The newest write is cached, and an event of its own version ignored.
	rc.wrote(k, cur, 6, rc.begin())
	if rc.event(k, 6) || rc.event(k, 3) {
		t.Error("an event not newer than the cache was applied")
	}
	if got, hit, _ := rc.get(k); !hit || !sameToken(got, cur) {
		t.Error("the newest write is not cached")
	}
	if !rc.event(k, 7) {
		t.Error("a newer event was ignored")
	}
	if _, hit, _ := rc.get(k); hit {
		t.Error("a newer event left the cache alone")
	}
	// Nothing begun before a dropAll is cached after it.
	ep = rc.begin()
	rc.dropAll()
	rc.fill(k, cur, 7, ep)
	rc.wrote(k, cur, 8, ep)
	if _, hit, _ := rc.get(k); hit {
		t.Error("a read or write begun before dropAll was cached")
	}
	// Without a subscription nothing is cached.
	rc.unsubscribed()
	rc.wrote(k, cur, 9, rc.begin())
	if _, hit, _ := rc.get(k); hit {
		t.Error("a write was cached without a subscription")
	}
	rc.subscribed()
	// prune keeps cached users' versions, forgets old others.
	rc.wrote(k, cur, 9, rc.begin())
	other := ukey{"acme", "other"}
	rc.event(other, 1)
	rc.prune(time.Now().Add(2 * time.Minute))
	if rc.stripe(k).m[k].v != 9 {
		t.Error("prune forgot a cached user's version")
	}
	if _, ok := rc.stripe(other).m[other]; ok {
		t.Error("prune kept an old version of a user not cached")
	}
}

// TestRedisLockExpiresAndRenews: a held lock outlives its TTL by renewal;
// a holder that dies (its store closed without unlock) frees it after the TTL.
func TestRedisLockExpiresAndRenews(t *testing.T) {
	srv := startRedis(t)
	a := openRedisT(t, srv, RedisOptions{})
	b := openRedisT(t, srv, RedisOptions{})
	a.lockTTL, a.lockRenew = 400*time.Millisecond, 100*time.Millisecond
	if _, err := a.Lock(bg, "refresh/x"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, time.Second) // 2.5 TTLs
	defer cancel()
	if _, err := b.Lock(ctx, "refresh/x"); err == nil {
		t.Fatal("a renewed lock was taken by another instance")
	}
	a.Close() // the holder dies: no more renewals, no unlock
	t0 := time.Now()
	ctx, cancel = context.WithTimeout(bg, 3*time.Second)
	defer cancel()
	unlock, err := b.Lock(ctx, "refresh/x")
	if err != nil {
		t.Fatalf("the dead holder's lock: %v", err)
	}
	unlock()
	if d := time.Since(t0); d > 600*time.Millisecond {
		t.Errorf("the dead holder's lock took %v to free; TTL 400 ms", d)
	}
}

func TestRedisClosed(t *testing.T) {
	srv := startRedis(t)
	s, err := OpenRedis(RedisOptions{Addresses: []string{srv.addr()}})
	if err != nil {
		t.Fatal(err)
	}
	h := s.HashKey("k")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Get(bg, "a", "b"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if err := s.Put(bg, testToken("a", "b")); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v", err)
	}
	if _, err := s.Lock(bg, "l"); !errors.Is(err, ErrClosed) {
		t.Errorf("Lock after Close: %v", err)
	}
	if !bytes.Equal(s.HashKey("k"), h) {
		t.Error("HashKey changed after Close")
	}
}

func TestOpenRedisErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    RedisOptions
		want string
	}{
		{"no address", RedisOptions{}, "no Redis address"},
		{"bad address", RedisOptions{Addresses: []string{"localhost"}}, "host:port"},
		{"short key", RedisOptions{Addresses: []string{"127.0.0.1:1"}, EncryptionKey: []byte("short")}, "16, 24 or 32"},
		{"cluster db", RedisOptions{Addresses: []string{"127.0.0.1:1", "127.0.0.1:2"}, DB: 1}, "only DB 0"},
	} {
		if _, err := OpenRedis(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error saying %q", tc.name, err, tc.want)
		}
	}
	port := redisFreePort(t) // nothing listens there
	_, err := OpenRedis(RedisOptions{Addresses: []string{fmt.Sprintf("127.0.0.1:%d", port)}})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("no Redis: %v; want ErrUnavailable", err)
	}
}

// TestRedisTouchPersisted: Sweep writes a touched token's last use onto
// the same pair, without an event (other instances keep their cache).
func TestRedisTouchPersisted(t *testing.T) {
	srv := startRedis(t)
	s := openRedisT(t, srv, RedisOptions{})
	p := openRedisT(t, srv, RedisOptions{})
	if err := s.Put(bg, testToken("acme", "u")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other instance to cache the token", func() bool {
		_, err := p.Get(bg, "acme", "u")
		return err == nil && p.cache.cached(ukey{"acme", "u"})
	})
	at := time.Now().Add(2 * time.Hour)
	s.Touch("acme", "u", at)
	if n, err := s.Sweep(bg, time.Now()); n != 0 || err != nil {
		t.Fatalf("Sweep: %d, %v", n, err)
	}
	time.Sleep(50 * time.Millisecond)
	if !p.cache.cached(ukey{"acme", "u"}) {
		t.Error("persisting a last use invalidated another instance's cache")
	}
	q := openRedisT(t, srv, RedisOptions{})
	got, err := q.Get(bg, "acme", "u")
	if err != nil || !got.LastUsed.Equal(at) {
		t.Fatalf("the stored LastUsed: %v, %v; want %v", got.LastUsed, err, at)
	}
	var listed time.Time
	q.List(bg, func(t *Token) error { listed = t.LastUsed; return nil })
	if !listed.Equal(at) {
		t.Errorf("List's LastUsed %v; want %v", listed, at)
	}
}

// TestRedisEventDelay measures how long after a Put on one instance the
// other instance's subscriber hears of it: the staleness bound of a
// healthy cluster (Redis doc comment).
func TestRedisEventDelay(t *testing.T) {
	srv := startRedis(t)
	s := openRedisT(t, srv, RedisOptions{})
	p := openRedisT(t, srv, RedisOptions{})
	heard := make(chan time.Time, 1)
	defer p.Subscribe(func(account, _ string) {
		if account != "" {
			heard <- time.Now()
		}
	})()
	var delays []time.Duration
	for i := range 300 {
		tok := testToken("acme", "u"+strconv.Itoa(i%10))
		if err := s.Put(bg, tok); err != nil {
			t.Fatal(err)
		}
		acked := time.Now()
		select {
		case at := <-heard:
			delays = append(delays, max(0, at.Sub(acked)))
		case <-time.After(time.Second):
			t.Fatalf("event %d not heard within 1 s", i)
		}
	}
	slices.Sort(delays)
	t.Logf("event after the writer's acknowledgement: p50 %v, p99 %v, max %v",
		delays[len(delays)/2], delays[len(delays)*99/100], delays[len(delays)-1])
}

// BenchmarkRedisGetCached is the hot path with the Redis store: a cached
// user's Get (compare BenchmarkGetHit, Badger's).
func BenchmarkRedisGetCached(b *testing.B) {
	srv := startRedis(b)
	s := openRedisT(b, srv, RedisOptions{})
	r := rand.New(rand.NewPCG(1, 2))
	logins := make([]string, 1000)
	for i := range logins {
		logins[i] = userLogin(i)
		if err := s.Put(bg, realisticToken(r, "acme", logins[i])); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Get(bg, "acme", logins[i%len(logins)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisPut: one Put (a script: SET, INCR, PUBLISH) on a loopback Redis.
func BenchmarkRedisPut(b *testing.B) {
	srv := startRedis(b)
	s := openRedisT(b, srv, RedisOptions{EncryptionKey: bytes.Repeat([]byte{1}, 32)})
	tok := realisticToken(rand.New(rand.NewPCG(1, 2)), "acme", "a")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok.Login = userLogin(i % 1000)
		if err := s.Put(bg, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisMemoryPerUser stores 10,000 users with amoCRM-sized tokens
// (encrypted) and reports Redis's used_memory per user.
func BenchmarkRedisMemoryPerUser(b *testing.B) {
	srv := startRedis(b)
	raw := srv.client()
	const users = 10000
	for i := 0; i < b.N; i++ {
		s := openRedisT(b, srv, RedisOptions{KeyPrefix: fmt.Sprintf("mem%d:", i), EncryptionKey: bytes.Repeat([]byte{1}, 32)})
		before := usedMemory(b, raw)
		r := rand.New(rand.NewPCG(1, 2))
		for u := range users {
			if err := s.Put(bg, realisticToken(r, "acme", userLogin(u))); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(usedMemory(b, raw)-before)/users, "B/user")
	}
}

func usedMemory(b *testing.B, c *redis.Client) int64 {
	info, err := c.Info(bg, "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no used_memory in INFO memory")
	return 0
}
