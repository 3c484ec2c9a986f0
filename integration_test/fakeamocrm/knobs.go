package fakeamocrm

import (
	"fmt"
	"time"
)

// SetDropCallbacks makes the next n callbacks to the Redirect URI be lost: the
// exchange answers 202 and a code is issued, but it never arrives. n <= 0 stops
// dropping.
func (s *Server) SetDropCallbacks(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.k.dropCallbacks = max(n, 0)
}

// SetHoldCallbacks withholds callbacks (on) until DeliverPending is called: a
// code that arrives late.
func (s *Server) SetHoldCallbacks(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.k.holdCallbacks = on
}

// DeliverPending starts delivering every withheld callback now, without the
// callback delay, and returns how many there were. Codes keep the expiry they
// were issued with.
func (s *Server) DeliverPending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.held)
	for _, pc := range s.held {
		s.startDeliveryLocked(pc, 0)
	}
	s.held = nil
	return n
}

// SetCallbackDelay sets the delay before each following callback; d <= 0 means none.
func (s *Server) SetCallbackDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.k.callbackDelay = max(d, 0)
}

// SetTokenEndpointFailure makes /oauth2/access_token answer status with body
// verbatim (as application/json), consuming no code or token: e.g. 500, or 200
// with garbage. status 0 restores normal answers.
func (s *Server) SetTokenEndpointFailure(status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.k.tokenFailure = injected{status: status, body: body}
}

// SetExchangeFailure makes /oauth2/exchange_api_key answer status with body
// verbatim, issuing no code and not counting toward the exchange interval.
// status 0 restores normal answers.
func (s *Server) SetExchangeFailure(status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.k.exchFailure = injected{status: status, body: body}
}

// SetDelay delays every answer (except /_fake/) by d: a slow amoCRM. A request
// whose client gives up meanwhile gets no answer.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.k.delay = max(d, 0)
}

// SetDown makes amoCRM unreachable (on): every connection that sends a request
// (except to /_fake/) is closed without an answer; where the connection cannot
// be taken over (HTTP/2, a recorder), the answer is 503.
func (s *Server) SetDown(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.k.down = on
}

// SetFailAll makes every request (except to /_fake/) get status, with a
// problem+json body, without being handled or recorded; 0 restores normal answers.
func (s *Server) SetFailAll(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.k.failAll = status
}

// RevokeUser invalidates every access and refresh token of the user.
func (s *Server) RevokeUser(account, login string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.userLocked(account, login)
	if err != nil {
		return err
	}
	for _, t := range s.access {
		if t.user == u {
			t.revoked = true
		}
	}
	for _, t := range s.refresh {
		if t.user == u {
			t.revoked = true
		}
	}
	return nil
}

// ExpireAccess makes every access token of the user expired now (their JWT exp
// claim is unchanged: the proxy learns it only from a 401). Refresh tokens stay valid.
func (s *Server) ExpireAccess(account, login string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.userLocked(account, login)
	if err != nil {
		return err
	}
	now := s.now()
	for _, t := range s.access {
		if t.user == u && now.Before(t.exp) {
			t.exp = now
		}
	}
	return nil
}

// SetAPIKey changes the user's API key, as a password change does. Tokens
// already issued keep working.
func (s *Server) SetAPIKey(account, login, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.userLocked(account, login)
	if err != nil {
		return err
	}
	u.keyHash = sum(key)
	return nil
}

// UserID returns the amoCRM id of the user.
func (s *Server) UserID(account, login string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.userLocked(account, login)
	if err != nil {
		return 0, err
	}
	return u.id, nil
}

// AccountID returns the amoCRM id of the account.
func (s *Server) AccountID(account string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[account]
	if a == nil {
		return 0, fmt.Errorf("fakeamocrm: no account %q", account)
	}
	return a.ID, nil
}

func (s *Server) userLocked(account, login string) (*user, error) {
	u := s.users[userKey(account, login)]
	if u == nil {
		return nil, fmt.Errorf("%w: %s in %s", errUnknownUser, login, account)
	}
	return u, nil
}
