package fakeamocrm

import (
	"crypto/subtle"
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// handleExchange serves POST /oauth2/exchange_api_key: the legacy key of a user
// is exchanged for an authorization code delivered later to the Redirect URI.
func (s *Server) handleExchange(w http.ResponseWriter, rq *request) {
	s.mu.Lock()
	s.st.ExchangeCalls++
	fail := s.k.exchFailure
	s.mu.Unlock()

	if rq.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.rejectExchange(w, http.StatusMethodNotAllowed, "", "method not allowed")
		return
	}
	if fail.status != 0 {
		writeRaw(w, fail)
		return
	}
	if mt, _, err := mime.ParseMediaType(rq.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.rejectExchange(w, http.StatusBadRequest, "Content-Type must be application/json", "the request body must be JSON")
		return
	}
	f, err := stringFields(rq.body)
	if err != nil {
		s.rejectExchange(w, http.StatusBadRequest, "Invalid request body", err.Error())
		return
	}
	if _, ok := f["client_uuid"]; !ok {
		detail := "client_uuid is required"
		if _, ok := f["client_id"]; ok {
			detail = "client_uuid is required; client_id is not accepted here"
		}
		s.rejectExchange(w, http.StatusBadRequest, "Check the `client_uuid` parameter", detail)
		return
	}
	if f["client_uuid"] != s.opts.ClientID {
		s.rejectExchange(w, http.StatusBadRequest, "Check the `client_uuid` parameter", "no such integration")
		return
	}
	if subtle.ConstantTimeCompare([]byte(f["client_secret"]), []byte(s.opts.ClientSecret)) != 1 {
		s.rejectExchange(w, http.StatusForbidden, "Client authentication failed", "wrong client_secret")
		return
	}
	login, key := f["login"], f["api_key"]
	if login == "" || key == "" {
		s.rejectExchange(w, http.StatusBadRequest, "Check the `login` and `api_key` parameters", "login and api_key are required")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	uk := userKey(rq.acct.Name, login)
	if last, ok := s.lastExchange[uk]; ok && s.opts.ExchangeInterval > 0 && rq.now.Sub(last) < s.opts.ExchangeInterval {
		s.st.Exchange429++
		s.violateLocked(rq, rq.acct.Name, ViolationExchangeTooOften, "", "", "exchange_api_key called again within the interval")
		writeProblem(w, http.StatusTooManyRequests, "Too Many Requests", "Too many requests", "exchange_api_key may be called once per interval per user")
		return
	}
	s.lastExchange[uk] = rq.now
	u := s.users[uk]
	if u == nil || keyHashOf(key) != u.keyHash {
		s.st.ExchangeRejected++
		writeProblem(w, http.StatusBadRequest, "Bad Request", "Invalid login or api_key", "the user was not found or the api_key is wrong")
		return
	}
	s.st.Exchanges++
	code := newCode()
	s.codes[hashKey(code)] = &authCode{user: u, exp: rq.now.Add(s.opts.CodeTTL)}
	s.scheduleCallbackLocked(&pendingCallback{
		account: rq.acct.Name, login: u.login, state: f["state"], url: s.callbackURL(rq.acct.Name, code, f["state"]),
	})
	w.WriteHeader(http.StatusAccepted)
}

// keyHashOf hashes an API key the way users' keys are kept.
func keyHashOf(key string) [32]byte { return sum(key) }

// rejectExchange counts and answers a rejected exchange.
func (s *Server) rejectExchange(w http.ResponseWriter, status int, hint, detail string) {
	s.mu.Lock()
	s.st.ExchangeRejected++
	s.mu.Unlock()
	writeProblem(w, status, "", hint, detail)
}

// callbackURL builds the Redirect URI call that delivers code.
func (s *Server) callbackURL(acct, code, state string) string {
	q := url.Values{}
	q.Set("code", code)
	if state != "" {
		q.Set("state", state)
	}
	q.Set("from_exchange", "1")
	q.Set("client_id", s.opts.ClientID)
	q.Set("referer", acct+"."+s.opts.BaseDomain)
	u := s.opts.RedirectURI
	if strings.Contains(u, "?") {
		return u + "&" + q.Encode()
	}
	return u + "?" + q.Encode()
}

// stringFields decodes a JSON object whose values must all be strings (or null).
func stringFields(body []byte) (map[string]string, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, errBadJSON
	}
	f := make(map[string]string, len(raw))
	for k, v := range raw {
		if string(v) == "null" {
			continue
		}
		var str string
		if err := json.Unmarshal(v, &str); err != nil {
			return nil, &fieldError{field: k}
		}
		f[k] = str
	}
	return f, nil
}

type fieldError struct{ field string }

func (e *fieldError) Error() string { return "field " + e.field + " must be a string" }

type constError string

func (e constError) Error() string { return string(e) }

const errBadJSON = constError("the body is not a JSON object")

// writeRaw answers an injected failure verbatim.
func writeRaw(w http.ResponseWriter, f injected) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.status)
	_, _ = w.Write([]byte(f.body))
}
