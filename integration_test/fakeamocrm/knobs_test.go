package fakeamocrm

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestDropCallbacks(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ExchangeInterval = -1 })
	e.fake.SetDropCallbacks(1)
	if a := e.exchange("acme", exchangeBody("user@example.com", acmeKey, "lost")); a.status != 202 {
		t.Fatalf("exchange: %d", a.status)
	}
	e.sink.none(t, 50*time.Millisecond)
	if a := e.exchange("acme", exchangeBody("user@example.com", acmeKey, "found")); a.status != 202 {
		t.Fatalf("exchange: %d", a.status)
	}
	if q := e.sink.next(t); q.Get("state") != "found" {
		t.Errorf("state %q", q.Get("state"))
	}
	st := e.waitStats(func(s Stats) bool { return s.CallbacksDelivered == 1 })
	if st.CallbacksDropped != 1 || st.Exchanges != 2 {
		t.Errorf("stats %+v", st)
	}
	if cb := e.fake.Callbacks(); cb[0].Outcome != "dropped" || cb[0].State != "lost" {
		t.Errorf("callbacks %+v", cb)
	}
}

func TestHoldAndDeliverPending(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.SetHoldCallbacks(true)
	if a := e.exchange("acme", exchangeBody("user@example.com", acmeKey, "late")); a.status != 202 {
		t.Fatalf("exchange: %d", a.status)
	}
	e.sink.none(t, 50*time.Millisecond)
	e.clk.Advance(10 * time.Minute)
	if n := e.fake.DeliverPending(); n != 1 {
		t.Fatalf("DeliverPending = %d", n)
	}
	q := e.sink.next(t)
	if q.Get("state") != "late" {
		t.Errorf("state %q", q.Get("state"))
	}
	decodeToken(t, e.tokenForm("acme", e.codeGrantValues(q.Get("code")))) // 10 minutes late: still valid
	if n := e.fake.DeliverPending(); n != 0 {
		t.Errorf("second DeliverPending = %d", n)
	}
}

func TestCallbackNon2xxIsFailed(t *testing.T) {
	e := newEnv(t, nil)
	e.sink.status.Store(http.StatusBadRequest)
	e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s"))
	e.sink.next(t)
	st := e.waitStats(func(s Stats) bool { return s.CallbacksFailed == 1 })
	if st.CallbacksDelivered != 0 {
		t.Errorf("stats %+v", st)
	}
	if cb := e.fake.Callbacks(); cb[0].Status != 400 || cb[0].Outcome != "failed" {
		t.Errorf("callbacks %+v", cb)
	}
}

func TestCallbackTimeoutIsFailedAndNotRetried(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.CallbackTimeout = 100 * time.Millisecond })
	e.sink.hold.Store(int64(time.Second))
	e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s"))
	q := e.sink.next(t) // the call arrived; its answer came too late
	st := e.waitStats(func(s Stats) bool { return s.CallbacksFailed == 1 })
	if st.CallbacksDelivered != 0 {
		t.Errorf("stats %+v", st)
	}
	cb := e.fake.Callbacks()
	if cb[0].Error != "timeout" || strings.Contains(cb[0].Error, q.Get("code")) {
		t.Errorf("callbacks %+v", cb)
	}
	e.sink.hold.Store(0)
	e.sink.none(t, 200*time.Millisecond)
}

func TestCallbackUnreachable(t *testing.T) {
	sinkGone := newSink(t)
	uri := sinkGone.redirectURI()
	sinkGone.srv.Close()
	e := newEnv(t, func(o *Options) { o.RedirectURI = uri })
	e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s"))
	e.waitStats(func(s Stats) bool { return s.CallbacksFailed == 1 })
	cb := e.fake.Callbacks()
	if cb[0].Error == "" || strings.Contains(cb[0].Error, "code=") || strings.Contains(cb[0].Error, uri) {
		t.Errorf("callback error %q", cb[0].Error)
	}
}

func TestDescribeErrHidesTheCode(t *testing.T) {
	u := "http://127.0.0.1:1/cb?code=SECRETCODE&state=s"
	err := &urlErr{msg: "dial " + u + " failed for SECRETCODE"}
	if got := describeErr(err, u); strings.Contains(got, "SECRETCODE") {
		t.Errorf("describeErr = %q", got)
	}
}

type urlErr struct{ msg string }

func (e *urlErr) Error() string { return e.msg }

func TestSetCallbackDelayAndResetStopsPending(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.SetCallbackDelay(time.Hour)
	e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s"))
	e.sink.none(t, 50*time.Millisecond)
	e.fake.Reset()
	e.sink.none(t, 50*time.Millisecond)
	if st := e.fake.Stats(); st.Exchanges != 0 {
		t.Errorf("stats after Reset %+v", st)
	}
	// After Reset the knob is back to the configured delay.
	e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s"))
	e.sink.next(t)
}

func TestSetDown(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.SetDown(true)
	req, _ := http.NewRequest(http.MethodGet, e.base("acme")+"/api/v4/account", nil)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("down: got an answer %d", resp.StatusCode)
	}
	if a := e.send(http.MethodGet, e.srv.URL+"/_fake/stats", "", nil); a.status != 200 {
		t.Errorf("debug endpoints while down: %d", a.status)
	}
	e.fake.SetDown(false)
	if a := e.send(http.MethodGet, e.base("acme")+"/api/v4/account", "", nil); a.status != 401 {
		t.Errorf("back up: %d", a.status)
	}
}

func TestSetFailAll(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.SetFailAll(503)
	if a := e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s")); a.status != 503 {
		t.Fatalf("status %d", a.status)
	}
	if st := e.fake.Stats(); st.ExchangeCalls != 0 {
		t.Errorf("a failed request was handled: %+v", st)
	}
	e.fake.SetFailAll(0)
	if a := e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s")); a.status != 202 {
		t.Fatalf("status %d", a.status)
	}
}

func TestSetDelay(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.SetDelay(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.base("acme")+"/api/v4/account", nil)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("a delayed answer arrived")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v", err)
	}
	e.fake.SetDelay(0)
	if a := e.send(http.MethodGet, e.base("acme")+"/api/v4/account", "", nil); a.status != 401 {
		t.Errorf("status %d", a.status)
	}
}

func TestCloseStopsCallbacks(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.SetCallbackDelay(time.Hour)
	e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s"))
	done := make(chan struct{})
	go func() { e.fake.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	e.fake.SetCallbackDelay(0)
	e.clk.Advance(time.Hour)
	e.exchange("acme", exchangeBody("user@example.com", acmeKey, "s"))
	e.sink.none(t, 50*time.Millisecond)
}
