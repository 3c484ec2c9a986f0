package tokenstore

import (
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestClosed: every method after Close returns ErrClosed (Touch and
// HashKey have no error: Touch is ignored, HashKey keeps working).
func TestClosed(t *testing.T) {
	s, err := Open(Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(bg, testToken("acme", "a")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	for name, err := range map[string]error{
		"Get (cached)":  second(s.Get(bg, "acme", "a")),
		"Get (missing)": second(s.Get(bg, "acme", "b")),
		"Put":           s.Put(bg, testToken("acme", "a")),
		"Delete":        s.Delete(bg, "acme", "a"),
		"List":          s.List(bg, func(*Token) error { return nil }),
		"PutSession":    s.PutSession(bg, "x", Session{Account: "a", Login: "b", Expires: exp}),
		"GetSession":    second(s.GetSession(bg, "x")),
		"DeleteSession": s.DeleteSession(bg, "x"),
		"PutPending":    s.PutPending(bg, Pending{State: "x", Expires: exp}),
		"TakePending":   second(s.TakePending(bg, "x")),
		"PutAttempt":    s.PutAttempt(bg, Attempt{Account: "a", Login: "b"}),
		"GetAttempt":    second(s.GetAttempt(bg, "a", "b")),
		"Sweep":         second(s.Sweep(bg, time.Now())),
		"Close":         s.Close(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	s.Touch("acme", "a", time.Now())
	if len(s.HashKey("k")) != 32 {
		t.Error("HashKey after Close")
	}
}

func second[T any](_ T, err error) error { return err }

// TestCloseWaits: Close while many goroutines write: every write either
// succeeded (and is on disk after reopen) or returned ErrClosed.
func TestCloseWaits(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir, nil)
	var mu sync.Mutex
	var ok []string
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				login := string(rune('a'+w)) + string(rune('0'+i%10)) + string(rune('0'+i/10%10))
				err := s.Put(bg, testToken("acme", login))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ok = append(ok, login)
				mu.Unlock()
				if i == 99 {
					return
				}
			}
		}(w)
	}
	time.Sleep(10 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s = openDir(t, dir, nil)
	defer s.Close()
	for _, login := range ok {
		if _, err := s.Get(bg, "acme", login); err != nil {
			t.Fatalf("%q was Put before Close but is missing: %v", login, err)
		}
	}
}

// TestListCallbackMayCallStore: fn may use the store, even while Close
// waits for List (no deadlock; the inner calls then get ErrClosed).
func TestListCallbackMayCallStore(t *testing.T) {
	s, err := Open(Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"a", "b", "c"} {
		if err := s.Put(bg, testToken("acme", l)); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan error)
	err = s.List(bg, func(tok *Token) error {
		if tok.Login == "a" {
			go func() { closed <- s.Close() }()
			time.Sleep(20 * time.Millisecond) // let Close start waiting
		}
		_, err := s.GetAttempt(bg, "acme", tok.Login)
		if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrClosed) {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

func TestInMemoryWithPath(t *testing.T) {
	if _, err := Open(Options{InMemory: true, Path: t.TempDir()}); err == nil {
		t.Fatal("InMemory with a Path opened")
	}
	if _, err := Open(Options{}); err == nil {
		t.Fatal("no Path opened")
	}
}

// TestBadgerLogger: Badger's warnings and errors reach zap, its info and
// debug messages do not; a nil logger discards.
func TestBadgerLogger(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := newBadgerLogger(zap.New(core))
	l.Debugf("debug %d", 1)
	l.Infof("info %d", 2)
	l.Warningf("warn %d\n", 3)
	l.Errorf("error %d", 4)
	got := logs.All()
	if len(got) != 2 || got[0].Message != "warn 3" || got[0].Level != zapcore.WarnLevel ||
		got[1].Message != "error 4" || got[1].Level != zapcore.ErrorLevel || got[0].LoggerName != "badger" {
		t.Fatalf("logged %+v", got)
	}
	newBadgerLogger(nil).Errorf("nothing %d", 5) // no panic
	// Opening a store logs nothing at warning level in normal operation.
	core, logs = observer.New(zapcore.DebugLevel)
	s, err := Open(Options{Path: t.TempDir(), Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, e := range logs.All() {
		t.Logf("logged on open/close: %s %s", e.Level, e.Message)
	}
}
