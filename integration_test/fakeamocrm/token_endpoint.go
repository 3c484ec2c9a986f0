package fakeamocrm

import (
	"crypto/subtle"
	"mime"
	"net/http"
	"net/url"
)

// handleAccessToken serves POST /oauth2/access_token: the authorization_code
// and refresh_token grants, with a JSON or a form body.
func (s *Server) handleAccessToken(w http.ResponseWriter, rq *request) {
	s.mu.Lock()
	s.st.TokenCalls++
	fail := s.k.tokenFailure
	s.mu.Unlock()

	if rq.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.rejectGrant(w, "", http.StatusMethodNotAllowed, "", "method not allowed")
		return
	}
	if fail.status != 0 {
		writeRaw(w, fail)
		return
	}
	f, err := grantFields(rq)
	if err != nil {
		s.rejectGrant(w, "", http.StatusBadRequest, "Invalid request body", err.Error())
		return
	}
	grant := f["grant_type"]
	if f["client_id"] != s.opts.ClientID {
		s.rejectGrant(w, grant, http.StatusBadRequest, "Check the `client_id` parameter", "client_id is missing or unknown")
		return
	}
	if subtle.ConstantTimeCompare([]byte(f["client_secret"]), []byte(s.opts.ClientSecret)) != 1 {
		s.rejectGrant(w, grant, http.StatusUnauthorized, "Client authentication failed", "client_secret is missing or wrong")
		return
	}
	if grant != "authorization_code" && grant != "refresh_token" {
		s.rejectGrant(w, grant, http.StatusBadRequest, "Unsupported grant type", "grant_type must be authorization_code or refresh_token")
		return
	}
	switch ru, ok := f["redirect_uri"]; {
	case !ok || ru == "":
		s.rejectGrant(w, grant, http.StatusBadRequest, "Check the `redirect_uri` parameter", "redirect_uri is required")
		return
	case ru != s.opts.RedirectURI:
		s.rejectGrant(w, grant, http.StatusBadRequest, "Redirect URI is not associated with client", "redirect_uri must match the registered one exactly")
		return
	}
	if grant == "authorization_code" {
		s.codeGrant(w, rq, f["code"])
	} else {
		s.refreshGrant(w, rq, f["refresh_token"])
	}
}

// codeGrant exchanges an authorization code for a token pair.
func (s *Server) codeGrant(w http.ResponseWriter, rq *request, code string) {
	if code == "" {
		s.rejectGrant(w, "authorization_code", http.StatusBadRequest, "Check the `code` parameter", "code is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.codes[hashKey(code)]
	var hint, detail string
	switch {
	case c == nil:
		hint, detail = "Cannot decrypt the authorization code", "unknown authorization code"
	case c.user.account != rq.acct.Name:
		hint, detail = "Authorization code has been revoked", "the code was issued for another account"
	case c.used:
		hint, detail = "Authorization code has been revoked", "the code was already used"
		s.violateLocked(rq, rq.acct.Name, ViolationCodeReuse, "code", "", "an authorization code was presented twice")
	case !rq.now.Before(c.exp):
		hint, detail = "Authorization code has expired", "the code is older than its lifetime"
	}
	if hint != "" {
		s.st.CodeGrantErrors++
		writeProblem(w, http.StatusBadRequest, "Bad Request", hint, detail)
		return
	}
	c.used = true
	s.st.CodeGrants++
	writeJSON(w, http.StatusOK, "application/json", s.issuePairLocked(rq.acct, c.user, rq.now))
}

// refreshGrant spends a refresh token for a new pair. Refresh tokens are
// single-use: the second use is a violation (the proxy lost a rotation).
func (s *Server) refreshGrant(w http.ResponseWriter, rq *request, token string) {
	if token == "" {
		s.rejectGrant(w, "refresh_token", http.StatusBadRequest, "Check the `refresh_token` parameter", "refresh_token is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.refresh[hashKey(token)]
	var hint, detail string
	switch {
	case t == nil:
		hint, detail = "Invalid refresh token", "unknown refresh token"
	case t.user.account != rq.acct.Name:
		hint, detail = "Invalid refresh token", "the token was issued for another account"
	case t.used:
		hint, detail = "Token has been revoked", "the refresh token was already used"
		s.st.RefreshReuse++
		s.violateLocked(rq, rq.acct.Name, ViolationRefreshReuse, "refresh_token", "", "a refresh token was spent twice")
	case t.revoked:
		hint, detail = "Token has been revoked", "the token was revoked"
	case !rq.now.Before(t.exp):
		hint, detail = "Token has expired", "the refresh token is older than its lifetime"
	}
	if hint != "" {
		s.st.RefreshErrors++
		writeProblem(w, http.StatusUnauthorized, "Unauthorized", hint, detail)
		return
	}
	t.used = true
	s.st.Refreshes++
	writeJSON(w, http.StatusOK, "application/json", s.issuePairLocked(rq.acct, t.user, rq.now))
}

// rejectGrant counts a failed grant of the given type and answers it.
func (s *Server) rejectGrant(w http.ResponseWriter, grant string, status int, hint, detail string) {
	s.mu.Lock()
	if grant == "refresh_token" {
		s.st.RefreshErrors++
	} else {
		s.st.CodeGrantErrors++
	}
	s.mu.Unlock()
	writeProblem(w, status, "", hint, detail)
}

// grantFields reads the token request's parameters from a JSON or a form body.
func grantFields(rq *request) (map[string]string, error) {
	mt, _, err := mime.ParseMediaType(rq.Header.Get("Content-Type"))
	if err != nil {
		return nil, constError("Content-Type must be application/json or application/x-www-form-urlencoded")
	}
	switch mt {
	case "application/json":
		return stringFields(rq.body)
	case "application/x-www-form-urlencoded":
		v, err := url.ParseQuery(string(rq.body))
		if err != nil {
			return nil, constError("the form body is malformed")
		}
		f := make(map[string]string, len(v))
		for k, vs := range v {
			if len(vs) != 1 {
				return nil, constError("parameter " + k + " is repeated")
			}
			f[k] = vs[0]
		}
		return f, nil
	default:
		return nil, constError("Content-Type must be application/json or application/x-www-form-urlencoded")
	}
}
