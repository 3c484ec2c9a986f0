//go:build unix

package tokenstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// TestPutSurvivesKill: a process that Puts and is then killed (no Close)
// leaves the token on disk: Put does not rely on Close.
func TestPutSurvivesKill(t *testing.T) {
	if dir := os.Getenv("TOKENSTORE_KILL_DIR"); dir != "" {
		s, err := Open(Options{Path: dir, EncryptionKey: bytes.Repeat([]byte{1}, 16)})
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(3)
		}
		for i := 0; i < 20; i++ {
			if err := s.Put(bg, testToken("acme", fmt.Sprint("killed-", i))); err != nil {
				fmt.Println("put:", err)
				os.Exit(3)
			}
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPutSurvivesKill$")
	cmd.Env = append(os.Environ(), "TOKENSTORE_KILL_DIR="+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 {
		t.Fatalf("helper did not die by signal: %v\n%s", err, out)
	}
	s := openDir(t, dir, bytes.Repeat([]byte{1}, 16))
	defer s.Close()
	for i := 0; i < 20; i++ {
		if _, err := s.Get(bg, "acme", fmt.Sprint("killed-", i)); err != nil {
			t.Fatalf("token %d Put before the kill: %v", i, err)
		}
	}
}

// TestSyncWrites: a store on disk syncs every write (the kill test above
// cannot tell a synced write from one left in the page cache).
func TestSyncWrites(t *testing.T) {
	s := openDir(t, t.TempDir(), nil)
	defer s.Close()
	if !s.db.Opts().SyncWrites {
		t.Fatal("SyncWrites is off")
	}
}
