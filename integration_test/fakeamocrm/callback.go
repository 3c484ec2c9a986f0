package fakeamocrm

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// pendingCallback is a code waiting to be delivered to the Redirect URI. url
// holds the code: it lives only until the delivery.
type pendingCallback struct {
	account, login, state string
	url                   string
}

// scheduleCallbackLocked drops, holds or schedules the delivery of pc.
// s.mu must be held.
func (s *Server) scheduleCallbackLocked(pc *pendingCallback) {
	if s.k.dropCallbacks > 0 {
		s.k.dropCallbacks--
		s.st.CallbacksDropped++
		s.callbacks = append(s.callbacks, CallbackResult{
			Time: s.now(), Account: pc.account, Login: pc.login, State: pc.state, Outcome: "dropped",
		})
		return
	}
	if s.k.holdCallbacks {
		s.held = append(s.held, pc)
		return
	}
	s.startDeliveryLocked(pc, s.k.callbackDelay)
}

// startDeliveryLocked delivers pc after delay in the background. s.mu must be held.
func (s *Server) startDeliveryLocked(pc *pendingCallback, delay time.Duration) {
	if s.closed {
		return
	}
	gen, stop := s.gen, s.stopCh
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if delay > 0 {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-stop:
				return
			}
		}
		s.deliver(gen, pc)
	}()
}

// deliver calls the Redirect URI once, without retry, and records the outcome.
func (s *Server) deliver(gen uint64, pc *pendingCallback) {
	ctx, cancel := context.WithTimeout(s.baseCtx, s.opts.CallbackTimeout)
	defer cancel()
	res := CallbackResult{Account: pc.account, Login: pc.login, State: pc.state}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pc.url, nil)
	if err == nil {
		req.Header.Set("User-Agent", "amoCRM-oAuth-client/1.0")
		var resp *http.Response
		resp, err = s.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			_ = resp.Body.Close()
			res.Status = resp.StatusCode
		}
	}
	switch {
	case err != nil:
		res.Outcome, res.Error = "failed", describeErr(err, pc.url)
	case res.Status >= 200 && res.Status < 300:
		res.Outcome = "delivered"
	default:
		res.Outcome = "failed"
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != s.gen {
		return
	}
	res.Time = s.now()
	if res.Outcome == "delivered" {
		s.st.CallbacksDelivered++
	} else {
		s.st.CallbacksFailed++
	}
	s.callbacks = append(s.callbacks, res)
}

// describeErr turns a delivery error into text that does not hold the URL (and
// so not the code).
func describeErr(err error, rawURL string) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var msg string
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		msg = "timeout"
	case errors.Is(err, context.Canceled):
		msg = "canceled"
	default:
		msg = err.Error()
	}
	if rawURL != "" {
		msg = strings.ReplaceAll(msg, rawURL, "<redirect_uri>")
	}
	if u, perr := url.Parse(rawURL); perr == nil {
		if code := u.Query().Get("code"); code != "" {
			msg = strings.ReplaceAll(msg, code, "<code>")
		}
	}
	return msg
}
