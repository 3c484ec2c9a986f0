package tokenstore

import "testing"

// TestAuthorization: a cached token's Authorization header value needs no
// concatenation, and a copy whose access token was changed gets its own.
func TestAuthorization(t *testing.T) {
	s := openMem(t)
	tok := testToken("acme", "a@example.com")
	if err := s.Put(bg, tok); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(bg, "acme", "a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if a := got.Authorization(); a != "Bearer "+tok.AccessToken {
		t.Fatalf("Authorization() = %q", a)
	}
	if n := testing.AllocsPerRun(100, func() { _ = got.Authorization() }); n != 0 {
		t.Errorf("a cached token's Authorization allocates %v times", n)
	}
	c := *got
	c.AccessToken = "changed"
	if a := c.Authorization(); a != "Bearer changed" {
		t.Errorf("a changed copy's Authorization() = %q; want the new token", a)
	}
	if a := (&Token{AccessToken: "plain"}).Authorization(); a != "Bearer plain" {
		t.Errorf("an uncached token's Authorization() = %q", a)
	}
}
